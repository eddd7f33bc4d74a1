/** A one-line progress bar with rate and ETA, redrawn in place on a terminal. */

/** One progress report. */
export interface ProgressState {
  readonly label: string;
  readonly done: number;
  readonly total: number;
  /** Items per second; 0 when unknown. */
  readonly rate: number;
  /** Milliseconds left; null when unknown. */
  readonly etaMs: number | null;
}

const WIDTH = 30;

/** `1h02m`, `3m07s`, `12s`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** `replaying [██████░░░░] 60% 6000/10000 1,234/s ETA 3s` */
export function renderProgress(p: ProgressState): string {
  const ratio = p.total > 0 ? Math.min(1, p.done / p.total) : p.done > 0 ? 1 : 0;
  const filled = Math.round(ratio * WIDTH);
  const bar = '█'.repeat(filled) + '░'.repeat(WIDTH - filled);
  const rate = `${Math.round(p.rate).toLocaleString('en-US')}/s`;
  const eta = p.etaMs === null ? 'ETA --' : `ETA ${formatDuration(p.etaMs)}`;
  return `${p.label} [${bar}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${p.done}/${p.total} ${rate} ${eta}`;
}

/** Draws progress on a terminal stream (carriage return, no newline until {@link ProgressBar.end}). */
export class ProgressBar {
  readonly #stream: NodeJS.WritableStream;
  #drawn = false;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
  }

  update(p: ProgressState): void {
    this.#stream.write(`\r\u001b[2K${renderProgress(p)}`);
    this.#drawn = true;
  }

  /** Ends the line, if one was drawn. */
  end(): void {
    if (this.#drawn) this.#stream.write('\n');
    this.#drawn = false;
  }
}
