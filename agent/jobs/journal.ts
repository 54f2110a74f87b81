/**
 * Jobs are journaled on disk so an agent that restarts reports each one truthfully.
 * A running job records its leftovers before it creates them: paths to remove, renames
 * to undo, services to start again, and work to finish rather than undo (`again`: the job
 * itself, run again: a rollback cut short must still put the old data back). Recovery
 * after a restart undoes them in reverse.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Job, JobRequest } from '../../lib/wire.js';

export type Leftover =
  | { kind: 'path'; path: string }
  | { kind: 'undo-rename'; from: string; to: string }
  | { kind: 'restart-service'; component: string }
  /** the job's request, run again by the agent's next start (its handler must be safe to run again from wherever it stopped) */
  | { kind: 'again'; request: JobRequest };

export interface JournalRecord {
  job: Job;
  leftovers: Leftover[];
}

export class Journal {
  constructor(private readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  async write(rec: JournalRecord): Promise<void> {
    const tmp = `${this.file(rec.job.id)}.tmp`;
    await writeFile(tmp, JSON.stringify(rec));
    await rename(tmp, this.file(rec.job.id));
  }

  async readAll(): Promise<JournalRecord[]> {
    const out: JournalRecord[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.dir, name), 'utf8')) as JournalRecord);
      } catch {
        await rm(join(this.dir, name), { force: true }); // a torn write of a tmp never lands here; anything else is junk
      }
    }
    return out.sort((a, b) => a.job.createdAt.localeCompare(b.job.createdAt));
  }

  async remove(id: string): Promise<void> {
    await rm(this.file(id), { force: true });
  }
}
