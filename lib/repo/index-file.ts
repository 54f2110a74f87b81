/**
 * A component's file index: every directory, file and symlink a snapshot holds, with
 * mode, owner, mtime, size, content hash (`contentHash`) and the chunks that make up the file: a
 * chunk is its sha256 (a chunk object of its own) or a reference into a pack. A file is
 * cut into fixed-size blocks (its `block`), so a page rewritten in place changes one
 * block, not the whole file.
 * Paths are relative, '/'-separated, and start with the snapshot set they belong to
 * (e.g. "data/sub/file"). An index read back from a repository is checked entry by
 * entry: nothing in it may point outside the place it is restored to.
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { LockstepError } from '../errors.js';
import { checkStored, parseJson } from './stored.js';

/**
 * 3: a file of several blocks has `contentHash` as its sha256.
 * 2: every file's sha256 is the SHA-256 of its whole content (still read).
 */
export const INDEX_VERSION = 3;

/**
 * A file's sha256 in a version-3 index: the SHA-256 of its content when it is one block
 * or empty, else the SHA-256 of its blocks' SHA-256 digests (32 bytes each), in order.
 * Every block is hashed anyway, for dedup; this way a file costs no second pass over its
 * bytes, and it still names the content exactly.
 */
export function contentHash(blockShas: string[]): string {
  if (blockShas.length === 1) return blockShas[0]!;
  const h = createHash('sha256');
  for (const s of blockShas) h.update(Buffer.from(s, 'hex'));
  return h.digest('hex');
}

/** whether an index's file hashes are `contentHash` (else whole-content SHA-256) */
export const hashesBlocks = (index: Pick<ComponentIndex, 'version'>) => index.version >= 3;

const Common = {
  path: Type.String({ minLength: 1 }),
  mode: Type.Integer({ minimum: 0, maximum: 0o7777 }),
  uid: Type.Integer(),
  gid: Type.Integer(),
  mtimeMs: Type.Number(),
};

const Sha = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** a blob stored inside a pack: `length` stored bytes at `offset` */
export const PackRefSchema = Type.Object({
  sha256: Sha,
  pack: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  offset: Type.Integer({ minimum: 0 }),
  length: Type.Integer({ minimum: 1 }),
});
export type PackRef = Static<typeof PackRefSchema>;
/** pending/<node>/<component>/<pack>.json: the blobs of a pack no index references yet */
export const PendingRecordSchema = Type.Object({ pack: Type.String({ pattern: '^[0-9a-f]{64}$' }), blobs: Type.Array(PackRefSchema) });
export type PendingRecord = Static<typeof PendingRecordSchema>;

export const ChunkRefSchema = Type.Union([Sha, PackRefSchema]);
export type ChunkRef = Static<typeof ChunkRefSchema>;

export function refSha(ref: ChunkRef): string {
  return typeof ref === 'string' ? ref : ref.sha256;
}

export const IndexEntrySchema = Type.Union([
  Type.Object({ type: Type.Literal('dir'), ...Common }),
  Type.Object({
    type: Type.Literal('file'),
    ...Common,
    size: Type.Integer({ minimum: 0 }),
    sha256: Sha,
    /** the size the file was cut into blocks at (absent: the index's chunkSize) */
    block: Type.Optional(Type.Integer({ minimum: 1 })),
    chunks: Type.Array(ChunkRefSchema),
    /**
     * what the file read for this backup was (inode, change time): the next backup of the
     * component reads it again unless those, size and mtime are all the same. Absent when
     * it changed too shortly before it was read to tell (the next backup reads it again).
     * Not restored.
     */
    seen: Type.Optional(Type.Object({ ino: Type.Number(), ctimeMs: Type.Number() })),
  }),
  Type.Object({ type: Type.Literal('symlink'), ...Common, target: Type.String() }),
]);
export type IndexEntry = Static<typeof IndexEntrySchema>;
export type FileEntry = Extract<IndexEntry, { type: 'file' }>;

export const ComponentIndexSchema = Type.Object({
  version: Type.Union([Type.Literal(2), Type.Literal(INDEX_VERSION)]),
  backupId: Type.String(),
  node: Type.String(),
  component: Type.String(),
  chunkSize: Type.Integer({ minimum: 1 }),
  sets: Type.Array(Type.String()),
  entries: Type.Array(IndexEntrySchema),
});
export type ComponentIndex = Static<typeof ComponentIndexSchema>;

export function isSafeRelativePath(p: string): boolean {
  if (p.startsWith('/') || p.includes('\0')) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

export function parseIndex(text: string, where: string): ComponentIndex {
  const index = checkStored(ComponentIndexSchema, parseJson(text, where), where, 'file index');
  for (const e of index.entries) {
    const set = e.path.split('/')[0]!;
    if (!isSafeRelativePath(e.path) || !index.sets.includes(set)) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} has an unsafe path "${e.path}"`);
    }
  }
  return index;
}
