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
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { LockstepError } from '../errors.js';
import { checkStored, parseJson } from './stored.js';
import { keepShape } from '../shapes.js';
import { held, settled } from '../memory.js';
import { decodeCuts } from './cuts.js';
import { FP } from './fingerprint.js';

/**
 * 7: as 6, with a file entry of more than `PIECE_CHUNKS` chunks written in pieces, each of
 *    which but the last ends its part (`more`; see `indexParts`): no part, and nothing a
 *    writer or a reader holds at once, grows with the file's blocks. Written only when some
 *    entry is that long.
 * 6: as 5, with files cut where their content says (`cuts`, lib/repo/cuts.ts). An index
 *    that holds such a file is always written in parts with this version: an agent that
 *    knows only version 5 refuses it, rather than place its blocks by a fixed size.
 * 5: as 4, with the ids of the packs its refs name in the head (`packs`) and, in the parts,
 *    a blob in a pack as `[sha256, pack number, offset, length]`: ~90 bytes of JSON, not
 *    ~185 (the pack id and the field names were half of an index).
 * 4: as 3, with the entries stored in parts (`parts`), for an index too big for one object
 *    (still read).
 * 3: a file of several blocks has `contentHash` as its sha256.
 * 2: every file's sha256 is the SHA-256 of its whole content (still read).
 */
export const INDEX_VERSION = 3;
export const INDEX_PARTS_VERSION = 5;
/** an index in parts (as version 5) that holds files cut by their content */
export const INDEX_CUTS_VERSION = 6;
/** an index in parts (as version 6) whose long file entries are written in pieces */
export const INDEX_PIECES_VERSION = 7;
/**
 * the most chunks a piece of a file entry holds (~1.8 MB of a part's JSON): as many as a
 * file cut at fixed sizes comes to (agent/transfer/upload.ts), whose entries are therefore
 * written whole as before
 */
export const PIECE_CHUNKS = 16384;
/** an index in parts whose refs are objects, as it was written before version 5 */
export const INDEX_PARTS_V4 = 4;

/** whether an index of `version` keeps its entries in parts */
export const inParts = (version: number) => hasPackTable(version) || version === INDEX_PARTS_V4;
/** whether an index of `version` names its parts' packs by number in a table of its head */
export const hasPackTable = (version: number) => version === INDEX_PARTS_VERSION || version === INDEX_CUTS_VERSION || version === INDEX_PIECES_VERSION;

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
const PackId = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** a blob stored inside a pack: `length` stored bytes at `offset` */
export const PackRefSchema = Type.Object({
  sha256: Sha,
  pack: PackId,
  offset: Type.Integer({ minimum: 0 }),
  length: Type.Integer({ minimum: 1 }),
});
/** a blob in a pack as a version-5 part holds it: [sha256, the pack's number in the head's `packs`, offset, length] */
const PackedTuple = Type.Tuple([Sha, Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 1 })]);
export type PackRef = Static<typeof PackRefSchema>;
/** pending/<node>/<component>/<pack>.json: the blobs of a pack no index references yet */
export const PendingRecordSchema = Type.Object({ pack: PackId, blobs: Type.Array(PackRefSchema) });
export type PendingRecord = Static<typeof PendingRecordSchema>;

export const ChunkRefSchema = Type.Union([Sha, PackRefSchema]);
export type ChunkRef = Static<typeof ChunkRefSchema>;

export function refSha(ref: ChunkRef): string {
  return typeof ref === 'string' ? ref : ref.sha256;
}

const Base64 = Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$' });

/** a file entry's fields, its chunks `chunkRef`s */
const fileFields = <C extends TSchema>(chunkRef: C) => ({
    type: Type.Literal('file'),
    ...Common,
    size: Type.Integer({ minimum: 0 }),
    sha256: Sha,
    /** the size the file was cut into blocks at (absent: the index's chunkSize, unless `cuts`) */
    block: Type.Optional(Type.Integer({ minimum: 1 })),
    /**
     * version 6: the file was cut where its content says (lib/repo/cuts.ts): the average it
     * was cut at (its log2), then its blocks' lengths, in order, a little-endian u32 each,
     * base64 (lengths alone in an index written before the average was recorded; no
     * `block` then)
     */
    cuts: Type.Optional(Base64),
    chunks: Type.Array(chunkRef),
    /**
     * the chunks' fingerprints (fingerprint.ts), 16 bytes each, in order, base64; 16 zeros
     * for one not known. Only the next backup of the component reads them: a block read
     * again whose fingerprint is the same is not hashed again. Absent for a file of one blob.
     */
    fp: Type.Optional(Base64),
    /**
     * what the file read for this backup was (inode, change time): the next backup of the
     * component reads it again unless those, size and mtime are all the same. Absent when
     * it changed too shortly before it was read to tell (the next backup reads it again).
     * Not restored.
     */
    seen: Type.Optional(Type.Object({ ino: Type.Number(), ctimeMs: Type.Number() })),
});
const DirSchema = Type.Object({ type: Type.Literal('dir'), ...Common });
const SymlinkSchema = Type.Object({ type: Type.Literal('symlink'), ...Common, target: Type.String() });

/** an index entry whose chunks are `chunkRef`s */
const entrySchema = <C extends TSchema>(chunkRef: C) => Type.Union([DirSchema, Type.Object(fileFields(chunkRef)), SymlinkSchema]);

export const IndexEntrySchema = entrySchema(ChunkRefSchema);
export type IndexEntry = Static<typeof IndexEntrySchema>;
export type FileEntry = Extract<IndexEntry, { type: 'file' }>;

export const IndexEntriesSchema = Type.Array(IndexEntrySchema);
const PartRef = Type.Union([Sha, PackedTuple]);
/** a version-5 part's entries */
const PartEntriesSchema = Type.Array(entrySchema(PartRef));

/**
 * Version 7: the next chunks of the file entry that ended the part before (with `more`),
 * with their blocks' lengths (`cuts`, no average) and fingerprints, if it has them; `more`
 * again if it goes on in the next part. Only ever a part's first.
 */
const pieceSchema = <C extends TSchema>(chunkRef: C) =>
  Type.Object({
    type: Type.Literal('more'),
    cuts: Type.Optional(Base64),
    fp: Type.Optional(Base64),
    chunks: Type.Array(chunkRef, { minItems: 1 }),
    more: Type.Optional(Type.Literal(true)),
  });
/** a version-7 part's entries and pieces: a file entry with `more` holds the first of its chunks, `cuts` and `fp` theirs; the rest follow in the next part */
const PiecePartSchema = Type.Array(Type.Union([DirSchema, Type.Object({ ...fileFields(PartRef), more: Type.Optional(Type.Literal(true)) }), SymlinkSchema, pieceSchema(PartRef)]));
const PieceSchema = pieceSchema(ChunkRefSchema);
/** a piece of a file entry (version 7), its refs named */
export type Piece = Static<typeof PieceSchema>;
/** a file entry as a version-7 part holds it: whole, or its first piece (`more`) */
export type PartFileEntry = FileEntry & { more?: true };

/** one stored part of a big index's entries: a JSON array of entries, in order */
export const IndexPartSchema = Type.Object({
  key: Type.String({ minLength: 1 }),
  /** SHA-256 of the part's plain JSON */
  sha256: Sha,
  /** how many entries begin in it (0: it holds a piece of one only, version 7) */
  entries: Type.Integer({ minimum: 0 }),
  /** version 7: its last entry goes on in the next part */
  more: Type.Optional(Type.Literal(true)),
});
export type IndexPart = Static<typeof IndexPartSchema>;

export const ComponentIndexSchema = Type.Object({
  version: Type.Union([Type.Literal(2), Type.Literal(INDEX_VERSION), Type.Literal(INDEX_PARTS_V4), Type.Literal(INDEX_PARTS_VERSION), Type.Literal(INDEX_CUTS_VERSION), Type.Literal(INDEX_PIECES_VERSION)]),
  backupId: Type.String(),
  node: Type.String(),
  component: Type.String(),
  chunkSize: Type.Integer({ minimum: 1 }),
  sets: Type.Array(Type.String()),
  entries: Type.Array(IndexEntrySchema),
  /** versions 4 and 5: where the entries are (`entries` is then empty); read back, they are in `entries` again */
  parts: Type.Optional(Type.Array(IndexPartSchema)),
  /** versions 5 to 7: the packs its parts' refs name, by number; read back, the refs name them again */
  packs: Type.Optional(Type.Array(PackId)),
});
export type ComponentIndex = Static<typeof ComponentIndexSchema>;

/**
 * An index to write whose entries are made one at a time as they are written (from a
 * compact form kept by the writer), with about how many bytes of JSON they make.
 */
export type IndexToWrite = Omit<ComponentIndex, 'entries'> & { entries: EntriesToWrite; /** some file is cut by its content: written in parts, as version 6 */ cut?: boolean };

/** the entries of an `IndexToWrite`, in order; `from(i)` gives them from entry `i` on (a writer that reuses parts skips theirs) */
export type EntriesToWrite = Iterable<EntryToWrite> & { aboutBytes: number; from?(i: number): Iterator<EntryToWrite> };

/** a part of an earlier index of the same component, stored again as it is by a writer that reuses it */
export interface ReusablePart {
  key: string;
  sha256: string;
  entries: number;
  /**
   * version 7: the parts, in order, of a run that holds an entry in pieces (the first is
   * this one; each but the last goes on in the next), all reused together: `entries` is
   * theirs in all
   */
  run?: IndexPart[];
}

/**
 * How a writer reuses the previous index's parts (agent/transfer/part-plan.ts): a part of
 * it whose entries are all unchanged is stored again by the store's own copy, not made,
 * compressed and written again.
 */
export interface PartPlan {
  /**
   * the previous index's pack table: the index numbers these packs the same way before any
   * other, so an unchanged entry's refs are the same bytes as in the previous index's part
   */
  packs: readonly string[];
  /** the previous index's part that holds exactly the entries from entry `i` on, all unchanged, if there is one */
  reusableAt(i: number): ReusablePart | undefined;
  /** whether a part of the previous index began at entry `i` (the part being made ends there too: parts stay lined up with the previous index's) */
  beginsPart(i: number): boolean;
  /**
   * the index's part that holds entries [from, from + part.entries): `reused` from the
   * previous index, or made; `shares`: it holds a piece of an entry it shares with the part
   * before or after it (version 7): reused, if ever, only with its whole run
   */
  written(from: number, part: IndexPart, reused: boolean, shares?: boolean): void;
  /** the index is written again from its start, reusing nothing, because of `why` (a part could not be copied): `packs` is then empty, and what `written` was told is void */
  restart(why: unknown): void;
}

/**
 * A file entry whose chunks are given as their JSON text, one at a time: a writer that
 * holds refs compactly makes no object for any of them. Written, it is the same bytes
 * as the `FileEntry` with those chunks.
 */
export interface FileEntryText {
  file: Omit<FileEntry, 'chunks'>;
  chunks: number;
  /** chunk `i` as an object */
  chunk(i: number): ChunkRef;
  /**
   * chunk `i` written as JSON at the end of `out`: the bytes JSON.stringify makes of it, or
   * with `packs`, a blob in a pack as a version-5 part holds it (its pack numbered there)
   */
  writeChunk(i: number, out: JsonBuffer, packs?: PackNumbers): void;
  /** `file` written as JSON at the end of `out` but for its closing brace (the bytes JSON.stringify makes of it), when the writer can do that without making it */
  writeHead?(out: JsonBuffer): void;
}

export type EntryToWrite = IndexEntry | FileEntryText;

/** the entry itself (for an index small enough to be one object) */
export function entryOf(e: EntryToWrite): IndexEntry {
  if (!('writeChunk' in e)) return e;
  return { ...e.file, chunks: Array.from({ length: e.chunks }, (_, i) => e.chunk(i)) };
}

/** about how many bytes of JSON an index entry at `path` with `chunks` chunks makes (~160 a chunk, ~22 its fingerprint) */
export function entryJsonAbout(path: string, chunks: number): number {
  return 200 + path.length + 182 * chunks;
}

export function isSafeRelativePath(p: string): boolean {
  if (p.startsWith('/') || p.includes('\0')) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/** The head of an index (with its entries when it has no parts). */
export function parseIndex(text: string, where: string): ComponentIndex {
  const index = checkStored(ComponentIndexSchema, parseJson(text, where), where, 'file index');
  if (inParts(index.version) !== (index.parts !== undefined) || (index.parts && index.entries.length > 0)) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not a valid file index: version ${index.version} ${index.parts ? 'with' : 'without'} parts`);
  }
  if (hasPackTable(index.version) !== (index.packs !== undefined)) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not a valid file index: version ${index.version} ${index.packs ? 'with' : 'without'} a pack table`);
  }
  checkPaths(index.entries, index.sets, where);
  return index;
}

/**
 * One part's entries; `sets` are its index's, `packs` its pack table (version 5: refs name
 * packs by number; given back as the ids themselves, one string per pack).
 */
export function parseIndexPart(text: string, where: string, sets: string[], packs?: string[]): IndexEntry[] {
  const entries = packs ? (namePacks(checkStored(PartEntriesSchema, parseJson(text, where), where, 'file index part'), packs, where) as IndexEntry[]) : checkStored(IndexEntriesSchema, parseJson(text, where), where, 'file index part');
  checkPaths(entries, sets, where);
  return entries;
}

/** A version-7 part's entries and pieces, as `parseIndexPart` gives a part's entries; a file entry that goes on (`more`) is checked whole once `Pieces` joined it. */
export function parsePiecePart(text: string, where: string, sets: string[], packs: string[]): (IndexEntry | PartFileEntry | Piece)[] {
  const items = namePacks(checkStored(PiecePartSchema, parseJson(text, where), where, 'file index part'), packs, where) as (IndexEntry | PartFileEntry | Piece)[];
  checkPaths(items, sets, where);
  return items;
}

/** a version-5 (or 7) part's entries with their packed blobs as `PackRef`s, in place */
function namePacks<E extends { type: string }>(entries: E[], packs: string[], where: string): E[] {
  for (const e of entries) {
    if (e.type !== 'file' && e.type !== 'more') continue;
    const chunks = (e as unknown as { chunks: (ChunkRef | Static<typeof PackedTuple>)[] }).chunks;
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      // a chunk object's hash, or (the schema allows nothing else) a blob in a pack
      if (typeof c === 'string') continue;
      const [sha256, n, offset, length] = c as Static<typeof PackedTuple>;
      const pack = packs[n];
      if (pack === undefined) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} names pack ${n}; its index lists ${packs.length}`);
      chunks[i] = { sha256, pack, offset, length };
    }
  }
  return entries;
}

/**
 * Nothing in an index may point outside the place it is restored to; a file cut by its
 * content has a length for each block, adding up to its size (checked once whole: not for
 * a first piece, `more`).
 */
function checkPaths(entries: (IndexEntry | PartFileEntry | Piece)[], sets: string[], where: string): void {
  for (const e of entries) {
    if (e.type === 'more') continue;
    const set = e.path.split('/')[0]!;
    if (!isSafeRelativePath(e.path) || !sets.includes(set)) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} has an unsafe path "${e.path}"`);
    }
    if (e.type === 'file' && !(e as PartFileEntry).more) checkCuts(e, where);
  }
}

function checkCuts(e: FileEntry, where: string): void {
  if (e.cuts !== undefined && (e.block !== undefined || !decodeCuts(e.cuts, e.chunks.length, e.size))) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where}: file "${e.path}" has block lengths (or an average block size) that do not match its ${e.chunks.length} blocks of ${e.size} bytes`);
  }
}

/**
 * Joins the pieces of long file entries (version 7) as an index's parts are read in order:
 * a part's entries go in, whole entries come out, the one a part began (`more`) once the
 * part that ends it came. Anything out of place is corruption: a piece with no entry before
 * it, an entry that does not go on where its part says it does, an index that ends in one.
 */
export class Pieces {
  private open: { entry: FileEntry; fps: Buffer[]; cuts: Buffer[]; where: string } | undefined;

  /** the whole entries of the next part read (`part`, at `where`) */
  join(items: (IndexEntry | PartFileEntry | Piece)[], part: IndexPart, where: string): IndexEntry[] {
    const whole: IndexEntry[] = [];
    let k = 0;
    const open = this.open;
    if (open) {
      const piece = items[0];
      if (piece?.type !== 'more') throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} does not go on with file "${open.entry.path}", which ${open.where} began`);
      if (piece.more && items.length > 1) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} holds entries after a piece of file "${open.entry.path}" that goes on`);
      for (const c of piece.chunks) open.entry.chunks.push(c);
      this.add(open, piece);
      k = 1;
      if (!piece.more) whole.push(this.close(where));
    }
    for (; k < items.length; k++) {
      const e = items[k]!;
      if (e.type === 'more') throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} holds a piece of a file entry where none goes on`);
      if (e.type === 'file' && (e as PartFileEntry).more) {
        if (k !== items.length - 1) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where}: file "${e.path}" goes on, but is not the part's last entry`);
        const { more: _, ...entry } = e as PartFileEntry;
        this.open = { entry, fps: [], cuts: [], where };
        this.add(this.open, e);
      } else whole.push(e);
    }
    if ((this.open !== undefined) !== (part.more === true)) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} ${part.more ? 'is said to end in a file that goes on, and does not' : 'ends in a file that goes on, and is not said to'}`);
    }
    return whole;
  }

  /** the index was read to its end: no entry may be left open */
  end(where: string): void {
    if (this.open) throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} ends in the middle of file "${this.open.entry.path}"`);
  }

  /** a piece's fingerprints and lengths (the first piece: the entry itself, `open.entry` its copy) */
  private add(open: NonNullable<Pieces['open']>, piece: { chunks: unknown[]; fp?: string; cuts?: string }): void {
    // a piece without fingerprints: unknown ones (zeros), as a whole entry without them
    open.fps.push(piece.fp === undefined ? Buffer.alloc(FP * piece.chunks.length) : Buffer.from(piece.fp, 'base64'));
    if ((piece.cuts !== undefined) !== (open.entry.cuts !== undefined)) {
      throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${open.where}: file "${open.entry.path}" has block lengths in some of its pieces only`);
    }
    if (piece.cuts !== undefined) open.cuts.push(Buffer.from(piece.cuts, 'base64'));
  }

  private close(where: string): FileEntry {
    const { entry, fps, cuts } = this.open!;
    this.open = undefined;
    const fp = Buffer.concat(fps);
    const known = fp.some((b) => b !== 0);
    const { fp: _, cuts: __, ...rest } = entry;
    const joined: FileEntry = { ...rest, ...(cuts.length > 0 ? { cuts: Buffer.concat(cuts).toString('base64') } : {}), ...(known ? { fp: fp.toString('base64') } : {}) };
    checkCuts(joined, where);
    return joined;
  }
}

/**
 * The ids of the packs an index's parts name, by number (version 5), numbered as first met;
 * the head lists them once written. `ofTable` numbers a pack by its number in the ref table
 * the refs come from (lib/repo/ref-table.ts), looked up once a pack.
 */
export class PackNumbers {
  readonly ids: string[] = [];
  private readonly byId = new Map<string, number>();
  /** by the table's pack number: ours + 1 (0: not met yet) */
  private byTable = new Int32Array(256);

  of(id: string): number {
    let n = this.byId.get(id);
    if (n === undefined) {
      n = this.ids.push(id) - 1;
      this.byId.set(id, n);
    }
    return n;
  }

  /** the number of the table's pack `p`, whose id is `ids[p]` */
  ofTable(p: number, ids: readonly string[]): number {
    if (p >= this.byTable.length) {
      const bigger = new Int32Array(Math.max(p + 1, this.byTable.length * 2));
      bigger.set(this.byTable);
      this.byTable = bigger;
    }
    const n = this.byTable[p]!;
    if (n > 0) return n - 1;
    const m = this.of(ids[p]!);
    this.byTable[p] = m + 1;
    return m;
  }
}

/** a blob in a pack as a version-5 part holds it (`PackedTuple`) */
function writePacked(out: JsonBuffer, r: PackRef, packs: PackNumbers): void {
  out.byte(OPEN);
  out.put(JSON.stringify(r.sha256));
  out.byte(COMMA);
  out.number(packs.of(r.pack));
  out.byte(COMMA);
  out.number(r.offset);
  out.byte(COMMA);
  out.number(r.length);
  out.byte(CLOSE);
}

/**
 * Entries as JSON arrays of about `partBytes` bytes each (an entry is never split, but with
 * `pieceChunks`: see below), in order. Written piece by piece into `buffers` buffers taken
 * in turn from part to part (a yielded `json` stays valid until `buffers` more are asked
 * for: with two, one part can be stored while the next is made): no string the size of an
 * index or of a big file's entry is ever made, only small ones that die young. With
 * `packs`, blobs in packs are written as version 5 holds them, their packs numbered in
 * `packs`; else as objects. With `plan` (and entries that can start anywhere), a part of
 * the previous index that holds the next entries unchanged is given as `reuse` instead
 * (the part being made ends before it). With `pieceChunks` (version 7), a file entry of
 * more chunks is written in pieces of that many, each but the last ending its part
 * (`more`): a part is then never much more than `partBytes` + a piece.
 */
export function* indexParts(
  entries: Iterable<EntryToWrite> & Pick<EntriesToWrite, 'from'>,
  partBytes: number,
  buffers = 1,
  packs?: PackNumbers,
  plan?: PartPlan,
  pieceChunks?: number,
): Generator<{ json: Buffer; entries: number; more?: true } | { reuse: ReusablePart }> {
  const outs = Array.from({ length: buffers }, () => new JsonBuffer(partBytes + 64 * 1024));
  // the buffers live until the last part is stored: growth counts from here (else the first
  // look at the heap in an index's write ran a full collection that found ~1 MB to free)
  settled();
  const reuse = entries.from ? plan : undefined;
  let turn = 0;
  let out = outs[0]!;
  let n = 0;
  let it = entries[Symbol.iterator]();
  /** the part made so far, ended; the next one begun */
  const endPart = (more: boolean) => {
    out.put(']');
    const made = { json: out.bytes(), entries: n, ...(more ? { more: true as const } : {}) };
    out = outs[++turn % buffers]!;
    out.length = 0;
    n = 0;
    out.put('[');
    return made;
  };
  out.put('[');
  for (let i = 0; ; ) {
    const old = reuse?.reusableAt(i);
    // a part ends where it is full, and where one of the previous index began (unless it is
    // still small: parts that shrank as files went are merged, not kept small for good)
    // (a part may hold no entry of its own, but the last piece of one before it)
    const holds = out.length > 1;
    if (holds && (old || out.length >= partBytes || (out.length >= partBytes / 4 && reuse?.beginsPart(i)))) yield endPart(false);
    if (old) {
      yield { reuse: old };
      i += old.entries;
      it = entries.from!(i);
      continue;
    }
    const next = it.next();
    if (next.done) break;
    const e = next.value;
    if (out.length > 1) out.byte(COMMA);
    n++;
    i++;
    const count = 'writeChunk' in e ? e.chunks : e.type === 'file' ? e.chunks.length : 0;
    if (pieceChunks === undefined || count <= pieceChunks) {
      writeEntry(out, e, packs);
      continue;
    }
    const cut = new EntryPieces(e as FileEntry | FileEntryText);
    for (let from = 0; from < count; from += pieceChunks) {
      const to = Math.min(count, from + pieceChunks);
      cut.write(out, from, to, packs);
      if (to < count) yield endPart(true);
    }
  }
  if (out.length > 1) {
    out.put(']');
    yield { json: out.bytes(), entries: n };
  }
}

/**
 * A long file entry written in pieces (version 7): the first is the entry with its first
 * chunks, their fingerprints and lengths (after the average the file was cut at), the next
 * `{"type":"more", ...}` with the next chunks, theirs; each but the last `"more":true`.
 */
class EntryPieces {
  private readonly head: Omit<FileEntry, 'chunks' | 'cuts' | 'fp'>;
  private readonly fp: Buffer | undefined;
  private readonly cuts: Buffer | undefined;
  /** bytes of `cuts` before the first length: the average (none in cuts written before it was kept) */
  private readonly cutsHead: number;
  private readonly count: number;

  constructor(private readonly e: FileEntry | FileEntryText) {
    const file = 'writeChunk' in e ? e.file : e;
    const { cuts, fp, chunks: _, ...head } = file as FileEntry;
    this.head = head;
    this.count = 'writeChunk' in e ? e.chunks : e.chunks.length;
    this.fp = fp === undefined ? undefined : Buffer.from(fp, 'base64');
    this.cuts = cuts === undefined ? undefined : Buffer.from(cuts, 'base64');
    this.cutsHead = this.cuts === undefined ? 0 : this.cuts.length - 4 * this.count;
  }

  /** the piece of chunks [from, to) at the end of `out` */
  write(out: JsonBuffer, from: number, to: number, packs: PackNumbers | undefined): void {
    const fields: Record<string, unknown> = from === 0 ? { ...this.head } : { type: 'more' };
    if (this.cuts) fields.cuts = this.cuts.toString('base64', from === 0 ? 0 : this.cutsHead + 4 * from, this.cutsHead + 4 * to);
    if (this.fp) fields.fp = this.fp.toString('base64', FP * from, FP * to);
    out.put(JSON.stringify(fields));
    out.length--;
    out.put(',"chunks":[');
    const e = this.e;
    for (let i = from; i < to; i++) {
      if (i > from) out.byte(COMMA);
      if ('writeChunk' in e) e.writeChunk(i, out, packs);
      else writeRef(out, e.chunks[i]!, packs);
    }
    out.put(to < this.count ? '],"more":true}' : ']}');
  }
}

/** one entry as JSON at the end of `out` */
function writeEntry(out: JsonBuffer, e: EntryToWrite, packs: PackNumbers | undefined): void {
  if ('writeChunk' in e) writeFileEntry(out, e, e.chunks, (i) => e.writeChunk(i, out, packs));
  else if (e.type === 'file') {
    const { chunks, ...head } = e;
    writeFileEntry(out, head, chunks.length, (i) => writeRef(out, chunks[i]!, packs));
  } else out.put(JSON.stringify(e));
}

/** a chunk given as an object, as a part holds it */
function writeRef(out: JsonBuffer, c: ChunkRef, packs: PackNumbers | undefined): void {
  if (packs && typeof c !== 'string') writePacked(out, c, packs);
  else out.put(JSON.stringify(c));
}

const COMMA = 0x2c;
const OPEN = 0x5b;
const CLOSE = 0x5d;

/** a file entry: its fields but its chunks (its closing brace taken back), then its `count` chunks, each written by `chunk` */
function writeFileEntry(out: JsonBuffer, head: Omit<FileEntry, 'chunks'> | FileEntryText, count: number, chunk: (i: number) => void): void {
  if ('writeChunk' in head && head.writeHead) head.writeHead(out);
  else {
    out.put(JSON.stringify('writeChunk' in head ? head.file : head));
    out.length--;
  }
  out.put(',"chunks":[');
  for (let i = 0; i < count; i++) {
    if (i > 0) out.byte(COMMA);
    chunk(i);
  }
  out.put(']}');
}

const QUOTE = 0x22;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** the 32 bytes at `from` in `src` as lower-case hex at `at` in `out`; where they end */
export function hexInto(src: Buffer, from: number, out: Buffer, at: number): number {
  for (let i = from; i < from + 32; i++) {
    const v = src[i]!;
    out[at++] = HEX_DIGITS[v >> 4]!;
    out[at++] = HEX_DIGITS[v & 15]!;
  }
  return at;
}

/** a whole number from 0 to 2^53 in decimal at `at` in `out`, as JSON writes it; where it ends */
export function digitsInto(n: number, out: Buffer, at: number): number {
  let end = at + 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) end++;
  for (let i = end - 1, x = n; i >= at; i--, x = Math.floor(x / 10)) out[i] = 0x30 + (x % 10);
  return end;
}

/** UTF-8 text appended to one buffer that grows when it must. */
export class JsonBuffer {
  private buf: Buffer;
  length = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  put(text: string): void {
    this.length += this.room(text.length * 3).write(text, this.length);
  }

  /** one byte (an ASCII character's code) */
  byte(c: number): void {
    this.room(1)[this.length++] = c;
  }

  /** bytes as they are (JSON text made beforehand) */
  raw(b: Uint8Array): void {
    this.room(b.length).set(b, this.length);
    this.length += b.length;
  }

  /** a number as JSON writes it */
  number(n: number): void {
    if (Number.isSafeInteger(n) && n >= 0) this.length = digitsInto(n, this.room(16), this.length);
    else this.put(JSON.stringify(n));
  }

  /** the 32 bytes at `from` in `src` as a JSON string of lower-case hex */
  hex32(src: Buffer, from: number): void {
    const b = this.room(66);
    b[this.length] = QUOTE;
    this.length = hexInto(src, from, b, this.length + 1);
    b[this.length++] = QUOTE;
  }

  /** the buffer, with room for `n` more bytes after `length` (write them there, then move `length` past them) */
  room(n: number): Buffer {
    if (this.length + n > this.buf.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
      // the bigger one stays (the one it replaces is garbage)
      held(bigger.length);
    }
    return this.buf;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

keepShape(new JsonBuffer(0));
keepShape(new PackNumbers());
