/**
 * What an agent removes from its state directory when it starts: leftovers of jobs a
 * crash interrupted, and the local index copies, kept snapshots and restore records of
 * components it no longer has. Nothing else. And when it uploads a component into a repository, the copies
 * of that component made for another repository.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentNode } from '../../agent/node.js';
import type { AgentConfig } from '../../agent/config.js';
import { createLogger } from '../../lib/log.js';

const REPO = '0b9c3f52-8e1d-4d6a-9f3e-2a7c5b1d4e60';
let root: string | undefined;

afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
  root = undefined;
});

async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

describe('agent start-up sweep', () => {
  it('removes crash leftovers and what belongs to components no longer configured, keeps the rest', async () => {
    root = await mkdtemp(join(tmpdir(), 'lockstep-sweep-'));
    const state = join(root, 'state');
    const data = join(root, 'db', 'data');
    const files: Record<string, string> = {
      'state/snapshots/20261203-101010-abc/data/x': 'snapshot of a killed backup',
      [`state/index-cache/${REPO}-db.idx`]: 'copy of a configured component',
      [`state/index-cache/${REPO}-db.idx.tmp`]: 'half-written copy',
      [`state/index-cache/${REPO}-db.idx.parts.json`]: "what was kept of a configured component's index parts",
      [`state/index-cache/${REPO}-db.idx.parts.json.tmp`]: 'half-written',
      [`state/index-cache/${REPO}-old.idx.parts.json`]: "what was kept of a removed component's index parts",
      [`state/index-cache/${REPO}-old.idx`]: 'copy of a removed component',
      [`state/index-cache/${REPO}-my-db.idx`]: 'copy of a removed component with a dash',
      'state/index-cache/notes.txt': 'not ours to judge',
      'state/last/db/data/x': 'kept snapshot of a configured component',
      'state/last/old/data/x': 'kept snapshot of a removed component',
      'state/restored/db/r20261203-101500-abcdef.json': "a restore's record of a configured component",
      'state/restored/old/r20261203-101500-abcdef.json': "a restore's record of a removed component",
      'state/jobs/j1.json': '{}',
      'db/data/live': 'live data',
      'db/data.lockstep-staging-r1/live': 'staging of a killed restore',
      'db/data.lockstep-old-r1/live': 'old data moved aside by a restore',
      'db/data.lockstep-removing-r0/live': 'old data of a finished restore whose removal a stop cut short',
      // inside a data directory that is a mount point: the same, by restore id
      'db/data/.lockstep-staging-r20261203-101600-abcdef/live': 'staging of a killed restore, inside',
      'db/data/.lockstep-old-r20261203-101600-abcdef/live': 'old data moved aside by a restore, inside',
      'db/data/.lockstep-removing-r20261203-101500-abcdef/live': 'old data being removed, inside',
      'db/data/.lockstep-staging-notes/live': 'not a restore of ours',
    };
    for (const [path, body] of Object.entries(files)) {
      await mkdir(join(root, path, '..'), { recursive: true });
      await writeFile(join(root, path), body);
    }
    const config = { node: 'n1', stateDir: state, components: [{ name: 'db', plugin: 'directory', tier: 'storage', path: data }] };
    const node = new AgentNode(config as unknown as AgentConfig, createLogger({ name: 'test', level: 'silent' }));

    const removed = await node.sweep();

    expect(removed.map((p) => p.slice(root!.length + 1)).sort()).toEqual(
      [
        'db/data.lockstep-staging-r1',
        'db/data.lockstep-removing-r0',
        'db/data/.lockstep-staging-r20261203-101600-abcdef',
        'db/data/.lockstep-removing-r20261203-101500-abcdef',
        `state/index-cache/${REPO}-db.idx.tmp`,
        `state/index-cache/${REPO}-db.idx.parts.json.tmp`,
        `state/index-cache/${REPO}-old.idx.parts.json`,
        `state/index-cache/${REPO}-my-db.idx`,
        `state/index-cache/${REPO}-old.idx`,
        'state/last/old',
        'state/restored/old',
        'state/snapshots/20261203-101010-abc',
      ].sort(),
    );
    expect(await tree(join(state, 'index-cache'))).toEqual([`${REPO}-db.idx`, `${REPO}-db.idx.parts.json`, 'notes.txt']);
    expect(await tree(join(state, 'last'))).toEqual(['db', 'db/data', 'db/data/x']);
    expect(await tree(join(state, 'jobs'))).toEqual(['j1.json']);
    expect(await tree(join(state, 'restored'))).toEqual(['db', 'db/r20261203-101500-abcdef.json']);
    expect(await tree(join(root, 'db'))).toEqual([
      'data',
      'data.lockstep-old-r1',
      'data.lockstep-old-r1/live',
      'data/.lockstep-old-r20261203-101600-abcdef',
      'data/.lockstep-old-r20261203-101600-abcdef/live',
      'data/.lockstep-staging-notes',
      'data/.lockstep-staging-notes/live',
      'data/live',
    ]);
    // a second start finds nothing more to remove
    expect(await node.sweep()).toEqual([]);
  });

  it('an upload into a new repository removes the copies of that component made for another one, and only those', async () => {
    root = await mkdtemp(join(tmpdir(), 'lockstep-sweep-'));
    const state = join(root, 'state');
    const OTHER = '5d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6';
    const names = [`${REPO}-db.idx`, `${OTHER}-db.idx`, `${OTHER}-db.idx.parts.json`, `${OTHER}-db2.idx`, `${REPO}-db2.idx`, 'notes.txt'];
    await mkdir(join(state, 'index-cache'), { recursive: true });
    for (const n of names) await writeFile(join(state, 'index-cache', n), n);
    const config = { node: 'n1', stateDir: state, components: [] };
    const node = new AgentNode(config as unknown as AgentConfig, createLogger({ name: 'test', level: 'silent' }));

    expect((await node.dropOtherIndexCopies(REPO, 'db')).sort()).toEqual([join(state, 'index-cache', `${OTHER}-db.idx`), join(state, 'index-cache', `${OTHER}-db.idx.parts.json`)]);
    expect(await tree(join(state, 'index-cache'))).toEqual([`${OTHER}-db2.idx`, `${REPO}-db.idx`, `${REPO}-db2.idx`, 'notes.txt'].sort());
    expect(await node.dropOtherIndexCopies(REPO, 'db')).toEqual([]);
    // no index-cache folder yet: nothing to do
    await rm(join(state, 'index-cache'), { recursive: true });
    expect(await node.dropOtherIndexCopies(REPO, 'db')).toEqual([]);
  });
});
