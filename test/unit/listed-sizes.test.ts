/**
 * listedSizes: the sizes of the referenced keys from a listing that starts just before each
 * key not yet settled. Against a store in memory that lists as S3 does (key order, a
 * thousand a page, from after any key): every key's answer is right (there with its size,
 * or missing) and the pages asked for follow the references, not the store's size.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LIST_PAGE, ListingUnordered, listEverySized, listedSizes } from '../../lib/repo/listed-sizes.js';

const key = (i: number) => `chunks/${createHash('sha256').update(String(i)).digest('hex')}`;

/** a store of `n` keys (sizes from their number) and `more` keys; `order` may spoil the listing's order (`from`: of pages after that key only) */
function store(n: number, order: 'sorted' | 'shuffled' = 'sorted', more: string[] = [], spoilFrom = '') {
  const size = new Map<string, number>();
  for (let i = 0; i < n; i++) size.set(key(i), i);
  for (const k of more) size.set(k, 1);
  const keys = [...size.keys()].sort();
  let pages = 0;
  let listing = 0;
  let most = 0;
  let given = 0;
  const listPage = async (prefix: string, after: string, max: number) => {
    pages++;
    most = Math.max(most, ++listing);
    await new Promise((r) => setImmediate(r));
    listing--;
    let from = keys.findIndex((k) => k > after);
    if (from < 0) from = keys.length;
    const page = keys.slice(from, from + max).filter((k) => k.startsWith(prefix));
    if (order === 'shuffled' && after >= spoilFrom) page.reverse();
    given += page.length;
    return { objects: page.map((k) => ({ key: k, size: size.get(k)! })), more: from + max < keys.length };
  };
  return { listPage, size, pages: () => pages, most: () => most, listing: () => listing, given: () => given };
}

/** listedSizes of `keys` under chunks/, as a map of the keys found (a missing key is not in it) */
async function sizesOf(listPage: Parameters<typeof listedSizes>[0], keys: string[]): Promise<{ sizes: Map<string, number>; requests: number }> {
  const { sizes, requests } = await listedSizes(listPage, 'chunks/', keys);
  expect(sizes).toHaveLength(keys.length);
  return { sizes: new Map(keys.flatMap((k, i) => (sizes[i]! >= 0 ? [[k, sizes[i]!] as const] : []))), requests };
}

describe('listedSizes', () => {
  it('a few keys of a big store: about a page for each, each found with its size or missing', async () => {
    const s = store(100_000);
    // 40 of the store's keys and 10 it does not have
    const wanted = [...Array.from({ length: 40 }, (_, i) => key(i * 2_411)), ...Array.from({ length: 10 }, (_, i) => key(200_000 + i))].sort();
    const { sizes, requests } = await sizesOf(s.listPage, wanted);
    expect(sizes.size).toBe(40);
    for (let i = 0; i < 40; i++) expect(sizes.get(key(i * 2_411))).toBe(i * 2_411);
    for (let i = 0; i < 10; i++) expect(sizes.has(key(200_000 + i))).toBe(false);
    // a listing of the whole store: 100 pages; the lanes at once, as HEAD requests would be
    expect(requests).toBeLessThanOrEqual(wanted.length);
    expect(s.most()).toBeGreaterThan(8);
    // a page of a thousand where each lane starts; then, the references far apart, a key a request
    expect(s.given()).toBeLessThan(16 * LIST_PAGE + wanted.length);
    expect(requests).toBe(s.pages());
  });

  it('most keys of a store: the pages a listing of it all takes, in lanes', async () => {
    const s = store(60_000);
    const wanted = Array.from({ length: 60_000 }, (_, i) => key(i)).filter((_, i) => i % 5 !== 0);
    wanted.push(key(70_000), key(70_001));
    wanted.sort();
    const { sizes, requests } = await sizesOf(s.listPage, wanted);
    expect(sizes.size).toBe(48_000);
    expect(sizes.has(key(70_000))).toBe(false);
    expect(sizes.get(key(59_999))).toBe(59_999);
    // 60 pages for all of it, and one more where each lane starts
    expect(requests).toBeGreaterThanOrEqual(60_000 / LIST_PAGE);
    expect(requests).toBeLessThanOrEqual(60_000 / LIST_PAGE + 17);
  });

  it('an empty store: every key missing, after a page for each lane', async () => {
    const s = store(0);
    const { sizes, requests } = await sizesOf(s.listPage, [key(1), key(2)].sort());
    expect(sizes.size).toBe(0);
    expect(requests).toBe(2);
  });

  it('a listing out of key order is refused, not taken for missing objects', async () => {
    const s = store(5_000, 'shuffled');
    const err = await listedSizes(s.listPage, 'chunks/', [key(3)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListingUnordered);
    expect((err as Error).message).toMatch(/listing of chunks\/ gave .* not in key order/);
  });

  it('every key of a store, each once, in 16 lanes at once after a first page; names of any kind', async () => {
    // keys before the first hex digit, between digits and letters, after f: each lane runs to the next one's start
    const odd = ['chunks/-early', 'chunks/5', 'chunks/9:between', 'chunks/A-upper', 'chunks/zz-late', 'chunks/f'];
    const s = store(30_000, 'sorted', odd);
    const seen = new Map<string, number>();
    const { requests } = await listEverySized(s.listPage, 'chunks/', (o) => seen.set(o.key, (seen.get(o.key) ?? 0) + 1));
    expect(seen.size).toBe(30_000 + odd.length);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    for (const k of odd) expect(seen.has(k)).toBe(true);
    expect(s.most()).toBeGreaterThan(8);
    // 30 pages one after the other; in lanes, about one more each
    expect(requests).toBeLessThanOrEqual(30 + 17);
  });

  it('a store of less than a page: one request', async () => {
    const s = store(700);
    let n = 0;
    expect(await listEverySized(s.listPage, 'chunks/', () => n++)).toEqual({ requests: 1 });
    expect(n).toBe(700);
  });

  it('a whole listing out of key order is refused', async () => {
    const s = store(5_000, 'shuffled');
    await expect(listEverySized(s.listPage, 'chunks/', () => undefined)).rejects.toBeInstanceOf(ListingUnordered);
  });

  it('one lane out of key order stops the others: once it throws, nothing is listed or handed on any more', async () => {
    const s = store(30_000, 'shuffled', [], 'chunks/8');
    let handed = 0;
    const err = await listEverySized(s.listPage, 'chunks/', () => void handed++).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListingUnordered);
    expect(s.listing()).toBe(0);
    const [pages, atEnd] = [s.pages(), handed];
    await new Promise((r) => setTimeout(r, 50));
    expect([s.pages(), handed]).toEqual([pages, atEnd]);
    // the lanes stopped at their next page: not every key was handed on
    expect(handed).toBeLessThan(30_000);
  });
});
