/**
 * The keys of the objects the kept backups need, as prune collects them: 16–32 bytes a key
 * (by how full the table is) where a Set of the key strings took ~140 (1.6 GB for 12.5 million objects, the
 * coordinator's heap limit not far above). A key is held by 64 bits of its name (packs and
 * chunk objects are named by 64 hex digits: a random id, a hash), in a table of pairs of
 * 32-bit words, open addressing, at most half full.
 *
 * Two keys that share those 64 bits both count as needed: prune deletes only what is not
 * here, so a dead object taken for a needed one is kept (until a later prune, whose keys
 * differ), never the other way round. At 12.5 million keys the chance that any dead one is
 * mistaken so is about one in a hundred thousand. A key whose name does not start with 16 hex
 * digits (none a repository writes) is held whole.
 */

const HEX16 = /^[0-9a-f]{16}/;
/** the word mixed into a pack's bits, so a pack and a chunk object of the same name differ */
const PACK_MIX = 0x9e3779b9;

export class LiveKeys {
  private words = new Uint32Array(2 * 1024);
  private n = 0;
  private readonly others = new Set<string>();

  get size(): number {
    return this.n + this.others.size;
  }

  add(key: string): void {
    const bits = this.bitsOf(key);
    if (!bits) {
      this.others.add(key);
      return;
    }
    if (2 * (this.n + 1) > this.words.length / 2) this.grow();
    if (this.place(this.words, bits[0], bits[1])) this.n++;
  }

  has(key: string): boolean {
    const bits = this.bitsOf(key);
    if (!bits) return this.others.has(key);
    const w = this.words;
    const mask = w.length / 2 - 1;
    for (let i = slot(bits[0], bits[1], mask); ; i = (i + 1) & mask) {
      const hi = w[2 * i]!;
      const lo = w[2 * i + 1]!;
      if (hi === 0 && lo === 0) return false;
      if (hi === bits[0] && lo === bits[1]) return true;
    }
  }

  /** [high word, low word] of a key's name, never both 0 (the table's empty slot); undefined for a name that is not hex */
  private bitsOf(key: string): [number, number] | undefined {
    const name = key.slice(key.lastIndexOf('/') + 1);
    if (!HEX16.test(name)) return undefined;
    let hi = parseInt(name.slice(0, 8), 16);
    const lo = parseInt(name.slice(8, 16), 16);
    if (key.startsWith('packs/')) hi = (hi ^ PACK_MIX) >>> 0;
    return hi === 0 && lo === 0 ? [0, 1] : [hi, lo];
  }

  /** put the pair in `w`; false when it is there already */
  private place(w: Uint32Array, hi: number, lo: number): boolean {
    const mask = w.length / 2 - 1;
    for (let i = slot(hi, lo, mask); ; i = (i + 1) & mask) {
      const h = w[2 * i]!;
      const l = w[2 * i + 1]!;
      if (h === 0 && l === 0) {
        w[2 * i] = hi;
        w[2 * i + 1] = lo;
        return true;
      }
      if (h === hi && l === lo) return false;
    }
  }

  private grow(): void {
    const old = this.words;
    const w = new Uint32Array(old.length * 2);
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0 || old[i + 1] !== 0) this.place(w, old[i]!, old[i + 1]!);
    this.words = w;
  }
}

/** the slot a pair starts its search at: the bits are random already, so the low word's, with the high word's mixed in */
function slot(hi: number, lo: number, mask: number): number {
  return (lo ^ Math.imul(hi, 0x85ebca6b)) & mask;
}
