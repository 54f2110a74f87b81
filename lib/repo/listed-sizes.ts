/**
 * The sizes of the objects a backup references, from the store's listing, without listing
 * every object of the repository.
 *
 * A backup of a small cluster kept in a repository that many clusters (or a long history)
 * share references a few thousand of its millions of objects; a listing of all of them is a
 * request per thousand, one after the other (12.5 million objects: 12,500 requests). An
 * S3 listing can start after any key and lists in key order, so the referenced keys, sorted,
 * are found by listing only around them: each page starts just before the next key not yet
 * settled, and settles every referenced key up to its last (listed: there, with its size;
 * not listed: missing). Where references are dense the pages follow one another as a plain
 * listing's would; where they are sparse each request settles at least one key, as a HEAD
 * would. The keys are listed in lanes (stretches of them), up to 16 at once. Where the next
 * referenced key is further than half a page away (by the repository's density, which a
 * full page shows: names are spread evenly), a lane asks for one key, not a thousand: it
 * settles the key asked as well, at a thousandth of the answer's size (~250 KB of XML
 * otherwise, read for one key).
 */
import type { StorageDriver } from '../../plugins/storage/types.js';

/** keys a listing page holds at most (S3's own limit) */
export const LIST_PAGE = 1000;
/**
 * lanes listed at once, at most: where keys are few each takes a request, and these run at
 * once as HEAD requests would; where they are many, each lane costs one request more than a
 * listing of its stretch would. Against RGW through a proxy that held each request 20 ms,
 * 20 keys (11 there) among 10,000 objects: 8 requests and 318-363 ms in one lane, 10 and
 * 154-205 ms in 16; a listing of all 10,000: 422-547 ms.
 */
const LANES = 16;

type ListPage = NonNullable<StorageDriver['listPage']>;

/**
 * Where a key's name falls among all names: its first 13 hex digits as a number (names of
 * packs and chunk objects are random or hashes: spread evenly); NaN for another name.
 */
function position(key: string): number {
  const name = key.slice(key.lastIndexOf('/') + 1);
  return /^[0-9a-f]{13}/.test(name) ? parseInt(name.slice(0, 13), 16) : Number.NaN;
}

/**
 * Run lanes at once; once one fails the others stop at their next page or object (`going`
 * says whether to go on), and this returns or throws only when none runs any more: nothing
 * is listed, or handed on, after the listing's end.
 */
async function inLanes(lanes: ((going: () => boolean) => Promise<void>)[]): Promise<void> {
  let failure: { err: unknown } | undefined;
  const going = () => failure === undefined;
  await Promise.all(
    lanes.map((lane) =>
      lane(going).catch((err: unknown) => {
        failure ??= { err };
      }),
    ),
  );
  if (failure) throw failure.err;
}

/** The store's listing did not come in key order, or did not start where it was asked: `listedSizes` cannot tell what is missing from it. */
export class ListingUnordered extends Error {
  constructor(prefix: string, why: string) {
    super(`the listing of ${prefix} ${why}`);
  }
}

/** one page of the listing after `after`, checked first: in key order, under `prefix`, and not empty where more follow */
async function orderedPage(listPage: ListPage, prefix: string, after: string, max: number): Promise<Awaited<ReturnType<ListPage>>> {
  const page = await listPage(prefix, after, max);
  let last = after;
  for (const o of page.objects) {
    if (!(o.key > last) || !o.key.startsWith(prefix)) throw new ListingUnordered(prefix, `gave ${o.key} after ${last || 'its start'}: it is not in key order`);
    last = o.key;
  }
  if (page.more && page.objects.length === 0) throw new ListingUnordered(prefix, `said more follow after ${after || 'its start'} but gave none`);
  return page;
}

/**
 * Sizes of `keys` (all under `prefix`, sorted by code unit: the byte order of ASCII keys):
 * `sizes[i]` is `keys[i]`'s, -1 where it is missing (8 bytes a key, where a map of them took
 * ~130). `requests` counts the listing pages asked for. Throws ListingUnordered for a store
 * whose listing is not in key order or does not start after the key asked (the caller then
 * lists everything).
 */
export async function listedSizes(
  listPage: ListPage,
  prefix: string,
  keys: readonly string[],
  signal?: AbortSignal,
): Promise<{ sizes: Float64Array; requests: number }> {
  const sizes = new Float64Array(keys.length).fill(-1);
  let requests = 0;
  const per = Math.ceil(keys.length / Math.max(1, Math.min(LANES, keys.length)));
  /**
   * the repository's keys per unit of name position, from the last full page any lane listed
   * (in key order: until one was, pages of one key are not trusted to be the next key)
   */
  let density: number | undefined;
  /** how many keys to ask for from just before keys[i]: a page, or the one key where the next reference is further than half a page */
  const pageFor = (i: number, to: number) => {
    if (density === undefined) return LIST_PAGE;
    if (i + 1 >= to) return 1;
    const between = (position(keys[i + 1]!) - position(keys[i]!)) * density;
    return between > LIST_PAGE / 2 ? 1 : LIST_PAGE;
  };

  /** keys[from..to) settled, page after page */
  const lane = async (from: number, to: number, going: () => boolean) => {
    let i = from;
    /** the last key listed in this lane */
    let listed = '';
    while (i < to && going()) {
      signal?.throwIfAborted();
      // just before keys[i]: the key less its last character sorts before it (a key listed between is only one more in the page)
      const before = keys[i]!.slice(0, -1);
      const after = listed > before ? listed : before;
      const page = await orderedPage(listPage, prefix, after, pageFor(i, to));
      requests++;
      for (const o of page.objects) {
        while (i < to && keys[i]! < o.key) i++; // not listed where it would be: missing
        if (i < to && keys[i] === o.key) sizes[i++] = o.size;
      }
      if (!page.more) return; // nothing after the page: the rest are missing
      const last = page.objects.at(-1)!.key;
      if (page.objects.length >= LIST_PAGE / 2) {
        const span = position(last) - position(page.objects[0]!.key);
        if (span > 0) density = (page.objects.length - 1) / span;
      }
      while (i < to && keys[i]! <= last) i++;
      listed = last;
    }
  };
  const lanes: ((going: () => boolean) => Promise<void>)[] = [];
  for (let from = 0; from < keys.length; from += per) {
    const to = Math.min(keys.length, from + per);
    lanes.push((going) => lane(from, to, going));
  }
  await inLanes(lanes);
  return { sizes, requests };
}

/** what a lane of a whole listing starts at: a hex digit after the prefix (chunks/ and packs/ are cut into folders by their names' first two hex digits) */
const HEX = '0123456789abcdef';

/**
 * Every object under `prefix` with its size, `each` called once for each (in no particular
 * order; a promise it gives back is waited for before the lane goes on), for a listing of all of a repository's chunks or packs (prune). One page first;
 * if more follow, the rest in 16 lanes at once, one for each first hex digit of the
 * names below the prefix (each lane from its digit to the next one's; the first from the
 * first page's last key, the last to the end, so a key of any name is listed): 12.5
 * million objects are ~780 requests one after the other instead of 12,500. Against RGW on
 * this machine's two cores: 30,000 objects 1.16-1.26x as fast as one page after the other
 * (RGW's CPU bounds both); through a proxy that held each request 20 ms, 10,000 objects
 * 264-394 ms against 427-547. Throws ListingUnordered as `listedSizes` does, before or
 * after some calls of `each`.
 */
export async function listEverySized(
  listPage: ListPage,
  prefix: string,
  each: (o: { key: string; size: number }) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<{ requests: number }> {
  let requests = 0;
  /** hand on a page's objects up to `end`: the last one handed on where the lane goes on after it, else undefined */
  const handOn = async (page: Awaited<ReturnType<ListPage>>, end: string | undefined, going: () => boolean): Promise<string | undefined> => {
    let last: string | undefined;
    for (const o of page.objects) {
      if ((end !== undefined && o.key > end) || !going()) return undefined; // the next lane's; or another lane failed
      const wait = each(o);
      if (wait) await wait;
      last = o.key;
    }
    return page.more ? last : undefined;
  };
  /** the objects of (from, end] in order, each given to `each` */
  const lane = async (from: string, end: string | undefined, going: () => boolean) => {
    for (let after: string | undefined = from; after !== undefined && going(); ) {
      signal?.throwIfAborted();
      requests++;
      after = await handOn(await orderedPage(listPage, prefix, after, LIST_PAGE), end, going);
    }
  };
  // one page first: a small repository's listing is one request
  requests++;
  const last = await handOn(await orderedPage(listPage, prefix, '', LIST_PAGE), undefined, () => true);
  if (last === undefined) return { requests };
  const lanes: ((going: () => boolean) => Promise<void>)[] = [];
  for (let d = 0; d < HEX.length; d++) {
    const end = d + 1 < HEX.length ? prefix + HEX[d + 1] : undefined;
    // a lane whose keys all come before the first page's last: listed already
    if (end !== undefined && end <= last) continue;
    // the first lane from the first page's last key (whatever came between them); the others from their digit
    const from = lanes.length === 0 ? last : prefix + HEX[d];
    lanes.push((going) => lane(from, end, going));
  }
  await inLanes(lanes);
  return { requests };
}
