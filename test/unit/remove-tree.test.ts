/**
 * Removing a tree: one with folders by `rm -rf` in a process of its own, a flat one (a
 * snapshot that only links to the live data) from here; from here too when `rm` cannot be
 * run. Nothing there is nothing to do.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from '../../lib/tree.js';
import { tempFolders } from '../helpers/temp.js';

const temp = tempFolders();
const path = process.env.PATH;

afterEach(() => {
  process.env.PATH = path;
});

async function tree(root: string): Promise<string> {
  const dir = join(root, 'tree');
  for (let i = 0; i < 3; i++) {
    await mkdir(join(dir, `d${i}`, 'deeper'), { recursive: true });
    for (let j = 0; j < 20; j++) await writeFile(join(dir, `d${i}`, 'deeper', `f${j}`), 'x'.repeat(j));
  }
  await symlink('/etc', join(dir, 'link-out'));
  return dir;
}

describe('removeTree', () => {
  it('removes a tree with folders, not what its symlinks point to', async () => {
    const root = await temp('rm');
    const dir = await tree(root);
    await removeTree(dir);
    expect(await readdir(root)).toEqual([]);
    expect((await readdir('/etc')).length).toBeGreaterThan(0);
  });

  it('removes a flat folder, a single file, and nothing that is not there', async () => {
    const root = await temp('rm');
    await mkdir(join(root, 'flat'));
    await writeFile(join(root, 'flat', 'a'), 'a');
    await symlink('/etc', join(root, 'flat', 'data'));
    await writeFile(join(root, 'file'), 'f');
    await removeTree(join(root, 'flat'));
    await removeTree(join(root, 'file'));
    await removeTree(join(root, 'never-was'));
    expect(await readdir(root)).toEqual([]);
  });

  it('removes the tree itself when rm cannot be run', async () => {
    const root = await temp('rm');
    const dir = await tree(root);
    process.env.PATH = join(root, 'no-such-bin');
    await removeTree(dir);
    process.env.PATH = path;
    expect(await readdir(root)).toEqual([]);
  });
});
