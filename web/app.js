// The upload page: drop or pick files, one row per file with its progress, speed, ETA,
// Pause / Resume / Cancel, and plain error messages; then the processing stage, when the
// server has one, until done (with a link to the result) or failed. All the protocol is
// in ferry.js.

import { upload, storageKey } from './ferry.js';

const drop = document.getElementById('drop');
const picker = document.getElementById('files');
const list = document.getElementById('uploads');
const notice = document.getElementById('notice');
const settings = document.querySelector('details.settings');
const apiKey = document.getElementById('api-key');
const parallel = document.getElementById('parallel');

/** Refusals that trying again cannot change (the file itself is refused). */
const FINAL_REFUSALS = [
  'file-too-large',
  'unsupported-content-type',
  'invalid-request',
  'too-many-chunks',
  'invalid-chunk-size',
];

/** Rows whose upload is under way, by the file's resume key (one upload per file). */
const active = new Map();

// Settings apply to the next file; Enter in a field submits nothing.
document.getElementById('settings').addEventListener('submit', (event) => event.preventDefault());

picker.addEventListener('change', () => {
  addFiles(picker.files);
  picker.value = ''; // so that picking the same file again fires `change` again
});

// Anywhere on the page, a dropped file is taken, never opened in place of the page.
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    drop.classList.add('over');
  });
}
document.addEventListener('dragleave', (event) => {
  if (event.relatedTarget === null || !document.documentElement.contains(event.relatedTarget)) {
    drop.classList.remove('over');
  }
});
document.addEventListener('drop', (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  drop.classList.remove('over');
  addFiles(event.dataTransfer.files);
});

function hasFiles(event) {
  return Array.from(event.dataTransfer?.types ?? []).includes('Files');
}

function addFiles(files) {
  for (const file of files) {
    const key = storageKey(location.origin, file);
    if (active.has(key)) {
      say(`${file.name} is already being uploaded.`);
      continue;
    }
    const row = new Row(file, key);
    list.prepend(row.element);
    row.start();
  }
}

function say(text) {
  notice.textContent = text;
}

/** One file's row and its upload. */
class Row {
  constructor(file, key) {
    this.file = file;
    this.key = key;
    this.transfer = null;
    const li = element('li', { class: 'upload', 'data-state': 'starting' });
    const name = element('div', { class: 'name' }, file.name || 'file');
    name.append(element('span', { class: 'size' }, formatBytes(file.size)));
    this.pauseButton = button('Pause', `Pause ${file.name}`, () => this.togglePause());
    this.cancelButton = button('Cancel', `Cancel ${file.name}`, () => this.cancel());
    this.retryButton = button('Retry', `Retry ${file.name}`, () => this.start());
    this.removeButton = button('Remove', `Remove ${file.name} from the list`, () => this.remove());
    const actions = element('div', { class: 'actions' });
    actions.append(this.pauseButton, this.retryButton, this.cancelButton, this.removeButton);
    this.bar = element('progress', { max: '100', value: '0', 'aria-label': `Progress of ${file.name}` });
    this.stateText = element('span', { class: 'state' });
    this.resultLink = element('a', { class: 'result', target: '_blank', rel: 'noopener noreferrer' }, 'Open result');
    this.percentText = element('span', { class: 'percent' });
    this.bytesText = element('span', { class: 'bytes' });
    this.speedText = element('span', { class: 'speed' });
    this.etaText = element('span', { class: 'eta' });
    const figures = element('div', { class: 'figures', 'aria-live': 'polite' });
    figures.append(this.stateText, this.resultLink, this.percentText, this.bytesText, this.speedText, this.etaText);
    this.errorText = element('p', { class: 'error', role: 'alert' });
    li.append(name, actions, this.bar, figures, this.errorText);
    this.element = li;
  }

  start() {
    if (active.has(this.key)) {
      say(`${this.file.name} is already being uploaded.`);
      return;
    }
    this.errorText.textContent = '';
    this.stage = null;
    active.set(this.key, this);
    this.transfer = upload(this.file, {
      token: apiKey.value.trim() || undefined,
      parallel: Math.max(1, Math.min(16, Number(parallel.value) || 4)),
      onProgress: (progress) => this.show(progress),
      // After the bytes: processing (over server-sent events) until done or failed.
      onStage: (stage) => {
        this.stage = stage;
        this.show(this.transfer.progress);
      },
    });
    this.show(this.transfer.progress);
    this.transfer.promise.then(
      (status) => {
        this.element.dataset.key = status.key;
        this.keyText = `stored as ${status.key}`;
        this.show(this.transfer.progress);
      },
      (error) => {
        if (error.code !== 'canceled') this.errorText.textContent = explain(error);
        if (error.code === 'missing-token' || error.code === 'invalid-token') settings.open = true;
        this.retryable = !FINAL_REFUSALS.includes(error.code);
        this.show(this.transfer.progress);
      },
    ).finally(() => {
      if (active.get(this.key) === this) active.delete(this.key);
    });
  }

  togglePause() {
    if (this.transfer.state === 'paused') this.transfer.resume();
    else this.transfer.pause();
  }

  async cancel() {
    this.cancelButton.disabled = true;
    await this.transfer.cancel();
  }

  /** Takes the row off the list; a completed upload's stage is no longer followed. */
  remove() {
    this.transfer?.cancel();
    this.element.remove();
  }

  /** Shows the upload's progress `p`, then, once completed, its stage. */
  show(p) {
    const li = this.element;
    const stage = p.state === 'completed' ? this.stage : null;
    li.dataset.state = p.state;
    li.dataset.stage = stage?.stage ?? (['canceled', 'failed'].includes(p.state) ? 'failed' : 'uploading');
    if (p.uploadId) li.dataset.uploadId = p.uploadId;
    li.dataset.chunks = `${p.chunksUploaded}/${p.totalChunks}`;
    li.dataset.resumed = String(p.resumed);
    const value = stage ? stage.progress : p.percent; // the processor's percent, once completed
    const percent = Math.floor(value);
    this.bar.value = value;
    this.bar.textContent = `${percent}%`;
    let text = stage ? describeStage(stage) : describe(p);
    if (p.state === 'completed' && this.keyText && (!stage || stage.stage === 'done')) text += `, ${this.keyText}`;
    this.stateText.textContent = text;
    const link = stage?.stage === 'done' ? webUrl(stage.url) : null;
    this.resultLink.hidden = !link;
    if (link) this.resultLink.href = link;
    else this.resultLink.removeAttribute('href');
    this.percentText.textContent = `${percent}%`;
    this.bytesText.textContent = `${formatBytes(p.bytesUploaded)} of ${formatBytes(p.bytesTotal)}`;
    const moving = p.state === 'uploading';
    this.speedText.textContent = moving && p.speed ? `${formatBytes(p.speed)}/s` : '';
    this.etaText.textContent = moving && p.eta != null ? `${formatDuration(p.eta)} left` : '';

    const final = ['completed', 'canceled', 'failed'].includes(p.state);
    this.pauseButton.hidden = final;
    this.pauseButton.textContent = p.state === 'paused' ? 'Resume' : 'Pause';
    this.pauseButton.setAttribute('aria-label', `${p.state === 'paused' ? 'Resume' : 'Pause'} ${this.file.name}`);
    this.cancelButton.hidden = final;
    this.cancelButton.disabled = false;
    this.retryButton.hidden = p.state !== 'failed' || !this.retryable;
    this.removeButton.hidden = !final;
  }
}

function describe(p) {
  switch (p.state) {
    case 'starting': return 'Starting…';
    case 'uploading': return p.resumed ? 'Uploading… (resumed)' : 'Uploading…';
    case 'paused': return 'Paused';
    case 'completing': return 'Finishing…';
    case 'completed': return 'Done';
    case 'canceled': return 'Canceled';
    case 'failed': return 'Failed';
    default: return p.state;
  }
}

function describeStage(s) {
  switch (s.stage) {
    case 'processing': return 'Processing…';
    case 'done': return 'Done';
    case 'failed': return `Failed: ${sentence(s.error)}`;
    default: return 'Finishing…';
  }
}

/** `url` when it is a web address (a result's `url` is the processor's word: no
 * `javascript:` links), else null. */
function webUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
  } catch {
    return null;
  }
}

/** A sentence a person can act on, from a FerryError. */
function explain(error) {
  const detail = sentence(error.message);
  switch (error.code) {
    case 'network':
      return 'Could not reach the server. Check the connection, then press Retry: the upload carries on where it stopped.';
    case 'missing-token':
      return 'This server asks for an API key: enter it under Settings, then press Retry.';
    case 'invalid-token':
      return 'The server refused the API key: check it under Settings, then press Retry.';
    case 'file-too-large': {
      const max = error.problem?.max_file_size;
      return `The server refused this file: ${detail}${max != null ? ` (${formatBytes(max)} at most)` : ''}.`;
    }
    case 'unsupported-content-type':
    case 'invalid-request':
    case 'too-many-chunks':
    case 'invalid-chunk-size':
      return `The server refused this file: ${detail}.`;
    case 'file-unreadable':
      return `${detail}.`;
    case 'store-unavailable':
    case 'storage-unavailable':
    case 'internal-error':
      return `The server had a problem and gave up after several tries: ${detail}. Press Retry later.`;
    default:
      return `The upload failed: ${detail}.`;
  }
}

function sentence(text) {
  return String(text || 'unknown error').replace(/[.\s]+$/, '');
}

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, accessibleName, onClick) {
  const node = element('button', { type: 'button', 'aria-label': accessibleName }, label);
  node.addEventListener('click', onClick);
  return node;
}
