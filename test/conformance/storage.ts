/**
 * The conformance suite every storage driver runs (fs, s3). It checks the
 * contract the repository relies on, not a driver's internals.
 */
import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { readAll } from '../../lib/repo/repository.js';
import { collected } from '../helpers/repo.js';
import { LockstepError } from '../../lib/errors.js';
import { DELETE_MANY_MAX, type StorageDriver } from '../../plugins/storage/types.js';

export function storageConformance(name: string, open: () => Promise<StorageDriver>): void {
  describe(`storage driver conformance: ${name}`, () => {
    it('put then get returns the same bytes; head gives the size', async () => {
      const d = await open();
      const body = randomBytes(100_000);
      await d.put('a/b/obj', body);
      expect(Buffer.compare(await readAll(await d.get('a/b/obj')), body)).toBe(0);
      expect((await d.head('a/b/obj'))?.size).toBe(body.length);
    });

    it("head tells when the object was last written, by the store's clock, and a later write moves it on", async () => {
      const d = await open();
      const before = Date.now();
      await d.put('when', Buffer.from('1'));
      const first = (await d.head('when'))?.modified;
      // the store's clock (S3: whole seconds) agrees with this host's here: one machine
      expect(first).toBeGreaterThan(before - 2000);
      expect(first).toBeLessThan(Date.now() + 1000);
      await new Promise((r) => setTimeout(r, 1100));
      await d.put('when', Buffer.from('2'));
      expect((await d.head('when'))?.modified).toBeGreaterThan(first!);
    });

    it('put accepts a stream and replaces an existing object', async () => {
      const d = await open();
      await d.put('s', Buffer.from('old'));
      await d.put('s', Readable.from([Buffer.from('new '), Buffer.from('content')]));
      expect((await readAll(await d.get('s'))).toString()).toBe('new content');
    });

    it('get honours byte ranges (inclusive end)', async () => {
      const d = await open();
      await d.put('r', Buffer.from('0123456789'));
      expect((await readAll(await d.get('r', { start: 2, end: 5 }))).toString()).toBe('2345');
    });

    it('a missing object: head is undefined, get throws LOCKSTEP_E_OBJECT_NOT_FOUND', async () => {
      const d = await open();
      expect(await d.head('missing')).toBeUndefined();
      const err = await d.get('missing').then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(LockstepError);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_OBJECT_NOT_FOUND');
    });

    it('putIfAbsent creates once and never overwrites', async () => {
      const d = await open();
      expect(await d.putIfAbsent('once', Buffer.from('first'))).toBe(true);
      expect(await d.putIfAbsent('once', Buffer.from('second'))).toBe(false);
      expect((await readAll(await d.get('once'))).toString()).toBe('first');
    });

    it('concurrent putIfAbsent: exactly one wins', async () => {
      const d = await open();
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => d.putIfAbsent('race', Buffer.from(`w${i}`))));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('list returns every key under a prefix and nothing else', async () => {
      const d = await open();
      for (const k of ['p/1', 'p/2', 'p/q/3', 'other/4']) await d.put(k, Buffer.from(k));
      const keys: string[] = [];
      for await (const k of d.list('p/')) keys.push(k);
      expect(keys.sort()).toEqual(['p/1', 'p/2', 'p/q/3']);
      const none: string[] = [];
      for await (const k of d.list('nothing-here/')) none.push(k);
      expect(none).toEqual([]);
    });

    it('list (and listShallow, where a driver has it) pages through more keys than one listing returns', async () => {
      const d = await open();
      // every other one a folder: one level down they are as many prefixes
      const name = (i: number) => `many/${String(i).padStart(4, '0')}`;
      const keys = Array.from({ length: 1100 }, (_, i) => (i % 2 === 0 ? name(i) : `${name(i)}/deep/x`));
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => d.put(k, Buffer.from('x'))));
      const seen: string[] = [];
      for await (const k of d.list('many/')) seen.push(k);
      expect(seen.sort()).toEqual(keys);
      if (!d.listShallow) return;
      const level: string[] = [];
      for await (const k of d.listShallow('many/')) level.push(k);
      expect(level.sort()).toEqual(Array.from({ length: 1100 }, (_, i) => (i % 2 === 0 ? name(i) : `${name(i)}/`)));
    });

    it('listSized, where a driver has it: the keys list gives, each with its size', async (t) => {
      const d = await open();
      if (!d.listSized) t.skip();
      for (const [k, n] of [['sz/a', 0], ['sz/b/c', 3], ['sz/b/d', 70_000], ['szx/e', 1]] as const) await d.put(k, Buffer.alloc(n, 1));
      const got = await collected(d.listSized!('sz/'));
      expect(got.sort((x, y) => x.key.localeCompare(y.key))).toEqual([
        { key: 'sz/a', size: 0 },
        { key: 'sz/b/c', size: 3 },
        { key: 'sz/b/d', size: 70_000 },
      ]);
    });

    it('listPage, where a driver has it: from just after a key, in key order, a page at a time, and whether more follow', async (t) => {
      const d = await open();
      if (!d.listPage) t.skip();
      for (const k of ['lp/a', 'lp/b/c', 'lp/b/d', 'lp/c', 'lpx/e']) await d.put(k, Buffer.from(k));
      const page = (after: string, max: number) => d.listPage!('lp/', after, max);
      const sized = (...keys: string[]) => keys.map((key) => ({ key, size: key.length }));
      expect(await page('lp/a', 2)).toEqual({ objects: sized('lp/b/c', 'lp/b/d'), more: true });
      expect(await page('lp/b/c', 1)).toEqual({ objects: sized('lp/b/d'), more: true });
      expect(await page('lp/b/d', 2)).toEqual({ objects: sized('lp/c'), more: false });
      // from a key that is not there, and from before the prefix
      expect(await page('lp/b/cc', 10)).toEqual({ objects: sized('lp/b/d', 'lp/c'), more: false });
      expect(await page('', 10)).toEqual({ objects: sized('lp/a', 'lp/b/c', 'lp/b/d', 'lp/c'), more: false });
      expect(await page('lp/c', 10)).toEqual({ objects: [], more: false });
    });

    it('listShallow, where a driver has it: the keys right under a prefix and each folder below it once, as its prefix', async (t) => {
      const d = await open();
      if (!d.listShallow) t.skip();
      for (const k of ['sh/a', 'sh/b/c', 'sh/b/d/e', 'sh/b/d/f', 'sh/g/h', 'shx/i']) await d.put(k, Buffer.from(k));
      const level = async (prefix: string) => (await collected(d.listShallow!(prefix))).sort();
      expect(await level('sh/')).toEqual(['sh/a', 'sh/b/', 'sh/g/']);
      expect(await level('sh/b/')).toEqual(['sh/b/c', 'sh/b/d/']);
      expect(await level('sh/b/d/')).toEqual(['sh/b/d/e', 'sh/b/d/f']);
      expect(await level('nothing-here/')).toEqual([]);
    });

    it('a large stream goes up whole (multipart on object stores) and ranges read from its end', async () => {
      const d = await open();
      const body = randomBytes(40 * 1024 * 1024 + 123);
      await d.put('big', Readable.from((function* () {
        for (let o = 0; o < body.length; o += 1 << 20) yield body.subarray(o, o + (1 << 20));
      })()));
      expect((await d.head('big'))?.size).toBe(body.length);
      const tail = await readAll(await d.get('big', { start: body.length - 1000, end: body.length - 1 }));
      expect(Buffer.compare(tail, body.subarray(body.length - 1000))).toBe(0);
      expect(Buffer.compare(await readAll(await d.get('big')), body)).toBe(0);
    });

    it('getBuffer, where a driver has it, gives what get gives: whole, ranged, cut short at the end', async (t) => {
      const d = await open();
      if (!d.getBuffer) t.skip();
      const body = randomBytes(3 * 1024 * 1024 + 123);
      await d.put('buf', body);
      for (const range of [undefined, { start: 0, end: 99 }, { start: 5, end: 70_004 }, { start: (1 << 20) - 5, end: 2 * (1 << 20) + 7 }, { start: 1, end: body.length - 2 }]) {
        const got = await d.getBuffer!('buf', range);
        expect(Buffer.compare(got, range ? body.subarray(range.start, range.end + 1) : body), JSON.stringify(range)).toBe(0);
      }
      // a range past the end gives the bytes there are
      const tail = await d.getBuffer!('buf', { start: body.length - 100_000, end: body.length + 1_000_000 });
      expect(Buffer.compare(tail, body.subarray(body.length - 100_000))).toBe(0);
      // several at once
      const all = await Promise.all(Array.from({ length: 8 }, (_, i) => d.getBuffer!('buf', { start: i * 300_000, end: i * 300_000 + 299_999 })));
      all.forEach((b, i) => expect(Buffer.compare(b, body.subarray(i * 300_000, (i + 1) * 300_000))).toBe(0));
      const err = await d.getBuffer!('missing').then(() => undefined, (e: unknown) => e);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_OBJECT_NOT_FOUND');
    });

    it('copy, where a driver has it: the same bytes under the new key, the source untouched; replaces a target; a missing source is LOCKSTEP_E_OBJECT_NOT_FOUND', async (t) => {
      const d = await open();
      if (!d.copy) return t.skip();
      const body = randomBytes(300_000);
      await d.put('cp/src/obj', body);
      await d.copy('cp/src/obj', 'cp/dst/deep/obj');
      expect(Buffer.compare(await readAll(await d.get('cp/dst/deep/obj')), body)).toBe(0);
      expect((await d.head('cp/dst/deep/obj'))?.size).toBe(body.length);
      // the two are separate objects: replacing or deleting one leaves the other
      await d.put('cp/src/obj', Buffer.from('replaced'));
      expect(Buffer.compare(await readAll(await d.get('cp/dst/deep/obj')), body)).toBe(0);
      await d.delete('cp/src/obj');
      expect((await d.head('cp/dst/deep/obj'))?.size).toBe(body.length);
      await d.put('cp/other', Buffer.from('other'));
      await d.copy('cp/other', 'cp/dst/deep/obj');
      expect((await readAll(await d.get('cp/dst/deep/obj'))).toString()).toBe('other');
      const err = await d.copy('cp/missing', 'cp/dst/x').then(() => undefined, (e: unknown) => e);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_OBJECT_NOT_FOUND');
      expect(await d.head('cp/dst/x')).toBeUndefined();
      const keys: string[] = [];
      for await (const k of d.list('cp/')) keys.push(k);
      expect(keys.sort()).toEqual(['cp/dst/deep/obj', 'cp/other']);
    });

    it('delete removes; deleting a missing key is not an error', async () => {
      const d = await open();
      await d.put('del', Buffer.from('x'));
      await d.delete('del');
      expect(await d.head('del')).toBeUndefined();
      await d.delete('del');
    });

    it('deleteMany, where a driver has it: every key given goes (more than one request takes), missing ones are no error, others stay', async (t) => {
      const d = await open();
      if (!d.deleteMany) t.skip();
      const keys = Array.from({ length: DELETE_MANY_MAX + 100 }, (_, i) => `dm/${String(i).padStart(4, '0')}`);
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => d.put(k, Buffer.from('x'))));
      await d.put('dm-kept', Buffer.from('kept'));
      const doomed = keys.filter((_, i) => i !== 7);
      expect(await d.deleteMany!([...doomed, 'dm/missing'])).toEqual([]);
      expect((await collected(d.list('dm'))).sort()).toEqual([keys[7]!, 'dm-kept'].sort());
    });

    it('declares its capabilities', async () => {
      const d = await open();
      expect(typeof d.capabilities.atomicCreateIfAbsent).toBe('boolean');
      expect(typeof d.capabilities.rangeRead).toBe('boolean');
    });
  });
}
