//! The Lua scripts of the Redis store, one per state change, each over one upload's keys.
//! Those that record events have `emit.lua` prepended.

use redis::Script;

/// Every script, loaded once into Redis's cache and called by its digest.
pub(super) struct Scripts {
    pub insert: Script,
    pub record: Script,
    pub claim: Script,
    pub renew: Script,
    pub finish: Script,
    pub touch: Script,
    pub cancel: Script,
    pub retire: Script,
    pub remove: Script,
    pub reschedule: Script,
    pub begin_append: Script,
    pub end_append: Script,
    pub take: Script,
    pub settle: Script,
    pub published: Script,
    pub process: Script,
}

impl Scripts {
    /// Every script, from the files beside this one.
    pub fn new() -> Self {
        Self {
            insert: Script::new(concat!(include_str!("emit.lua"), include_str!("insert.lua"))),
            record: Script::new(concat!(include_str!("emit.lua"), include_str!("record.lua"))),
            claim: Script::new(include_str!("claim.lua")),
            renew: Script::new(include_str!("renew.lua")),
            finish: Script::new(concat!(include_str!("emit.lua"), include_str!("finish.lua"))),
            touch: Script::new(include_str!("touch.lua")),
            cancel: Script::new(concat!(include_str!("emit.lua"), include_str!("cancel.lua"))),
            retire: Script::new(concat!(include_str!("emit.lua"), include_str!("retire.lua"))),
            remove: Script::new(include_str!("remove.lua")),
            reschedule: Script::new(include_str!("reschedule.lua")),
            begin_append: Script::new(include_str!("begin_append.lua")),
            end_append: Script::new(concat!(include_str!("emit.lua"), include_str!("end_append.lua"))),
            take: Script::new(include_str!("take.lua")),
            settle: Script::new(include_str!("settle.lua")),
            published: Script::new(include_str!("published.lua")),
            process: Script::new(concat!(include_str!("emit.lua"), include_str!("process.lua"))),
        }
    }

    /// Every script, to load at once.
    pub fn all(&self) -> [&Script; 16] {
        [
            &self.insert,
            &self.record,
            &self.claim,
            &self.renew,
            &self.finish,
            &self.touch,
            &self.cancel,
            &self.retire,
            &self.remove,
            &self.reschedule,
            &self.begin_append,
            &self.end_append,
            &self.take,
            &self.settle,
            &self.published,
            &self.process,
        ]
    }
}
