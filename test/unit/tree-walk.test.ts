/**
 * walkTree: depth-first, parents before children, names sorted, whatever folder listings
 * it asked for ahead of their turn; a folder gone by its turn is reported, not fatal.
 * walkEach tells a visitor the same entries in the same order.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { lstatSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { walkEach, walkTree, type TreeEntry, type TreeVisitor } from '../../lib/tree.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'lockstep-walk-'));
  for (const d of ['a/b/c', 'a/d', 'e', 'f/g']) await mkdir(join(root, d), { recursive: true });
  for (const f of ['a/b/c/1', 'a/b/2', 'a/d/3', 'a/4', 'e/5', 'f/g/6', '7']) await writeFile(join(root, f), f);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('walkTree', () => {
  it('gives every entry once, each folder before what is in it, folders in name order', async () => {
    const seen: string[] = [];
    for await (const e of walkTree(root)) seen.push(`${e.type} ${e.rel}`);
    expect(seen).toEqual([
      'dir ',
      'file 7',
      'dir a',
      'dir e',
      'dir f',
      'file a/4',
      'dir a/b',
      'dir a/d',
      'file a/b/2',
      'dir a/b/c',
      'file a/b/c/1',
      'file a/d/3',
      'file e/5',
      'dir f/g',
      'file f/g/6',
    ]);
  });

  it('a folder removed after its parent was listed is reported as vanished, and the rest is walked', async () => {
    const skipped: string[] = [];
    const seen: string[] = [];
    for await (const e of walkTree(root, (rel, why) => skipped.push(`${rel}: ${why}`))) {
      seen.push(e.rel);
      // listed with the root, gone before its turn (its listing may already have been asked for)
      if (e.rel === 'a/b') await rm(join(root, 'e'), { recursive: true });
    }
    // the folder itself, or (its listing asked for ahead of its turn) the file it held
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatch(/^e(\/5)?: vanished during the walk$/);
    expect(seen).toContain('f/g/6');
    expect(seen).not.toContain('e/5');
  });

  it('walkEach tells the same entries in the same order, through a symlinked root, a fifo skipped', async () => {
    await symlink('a/b', join(root, 'link'));
    execFileSync('mkfifo', [join(root, 'a', 'fifo')]);
    const via = join(root, '..', `${root.split('/').at(-1)}-via`);
    await symlink(root, via);
    try {
      const fromTree: string[] = [];
      const treeSkips: string[] = [];
      for await (const e of walkTree(via, (rel, why) => treeSkips.push(`${rel}: ${why}`))) fromTree.push(`${e.type} ${e.rel} ${e.stat.ino}`);
      class Seen implements TreeVisitor {
        readonly lines: string[] = [];
        entry(rel: string, type: TreeEntry['type'], st: Stats): void {
          this.lines.push(`${type} ${rel} ${st.ino}`);
        }
      }
      const seen = new Seen();
      const skips: string[] = [];
      await walkEach(via, seen, (rel, why) => skips.push(`${rel}: ${why}`));
      expect(seen.lines).toEqual(fromTree);
      expect(seen.lines).toContain(`symlink link ${lstatSync(join(root, 'link')).ino}`);
      expect(seen.lines.filter((l) => l.startsWith('file '))).toHaveLength(7);
      expect(skips).toEqual(['a/fifo: not a regular file, directory or symlink']);
      expect(treeSkips).toEqual(skips);
    } finally {
      await rm(via, { force: true });
    }
  });
});
