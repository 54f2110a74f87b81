/**
 * Progress for a person at a terminal: one line per step as it ends, and during long
 * steps a live line with bytes done, rate and ETA (stderr, so stdout stays the report).
 */
import type { StepRecord } from '../lib/report.js';
import type { Job } from '../lib/wire.js';
import { bytes, ms } from './render.js';

export class TerminalProgress {
  private last = 0;
  private live = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  stepStarted(name: string): void {
    this.clear();
    this.out.write(`▸ ${name}…\n`);
  }

  stepEnded(r: StepRecord): void {
    this.clear();
    this.out.write(`${r.status === 'ok' ? '✓' : '✗'} ${r.name} ${ms(r.durationMs)}\n`);
  }

  update(step: string, jobs: Job[]): void {
    const now = Date.now();
    if (now - this.last < 500 || !this.out.isTTY) return;
    this.last = now;
    const done = jobs.reduce((n, j) => n + j.progress.bytesDone, 0);
    const total = jobs.reduce((n, j) => n + j.progress.bytesTotal, 0);
    const rate = jobs.reduce((n, j) => n + (j.state === 'running' ? j.progress.rate : 0), 0);
    const running = jobs.filter((j) => j.state === 'running').length;
    if (total === 0) return;
    const frac = Math.min(1, done / total);
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const eta = rate > 0 ? ms(Math.round(((total - done) / rate) * 1000)) : '?';
    this.out.write(`\r  ${step} [${bar}] ${bytes(done)} / ${bytes(total)}  ${bytes(rate)}/s  ETA ${eta}  ${running} running `);
    this.live = true;
  }

  private clear(): void {
    if (this.live && this.out.isTTY) this.out.write('\r\x1b[2K');
    this.live = false;
  }
}

export const quietProgress = { stepStarted() {}, stepEnded() {}, update() {} };
