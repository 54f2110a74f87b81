import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { PART_SIZE, s3Driver } from '../../plugins/storage/s3.js';
import { storageConformance } from '../conformance/storage.js';
import { LockstepError } from '../../lib/errors.js';
import { RepoLock } from '../../lib/repo/lock.js';
import { Repository } from '../../lib/repo/repository.js';
import { MANIFEST_VERSION, type Manifest } from '../../lib/repo/manifest.js';
import { prune } from '../../lib/repo/prune.js';
import type { BackupReport } from '../../lib/report.js';
import { answeringProxy, behindProxy, clientOf, driverOf, rgwBucket, type SeenRequest } from '../helpers/s3.js';
import { collected } from '../helpers/repo.js';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand, PutBucketVersioningCommand, UploadPartCommand } from '@aws-sdk/client-s3';

let bucket: Awaited<ReturnType<typeof rgwBucket>> | undefined;


// every open() is a fresh prefix in one bucket on the run's RGW
storageConformance('s3 (Ceph RGW)', async () => {
  bucket ??= await rgwBucket();
  return driverOf(bucket, { prefix: `t-${randomBytes(4).toString('hex')}/repo` });
});

describe('s3 driver settings', () => {
  it('copyObject: false declares a store without CopyObject: the driver offers no copy', async () => {
    const b = await rgwBucket();
    expect(driverOf(b).copy).toBeTypeOf('function');
    expect(driverOf(b, { copyObject: false }).copy).toBeUndefined();
  });
});

describe('s3 driver errors', () => {
  it('wrong credentials: a clear error naming the location, no secret in it', async () => {
    const b = await rgwBucket();
    const d = driverOf(b, { secretAccessKey: 'not-the-secret' });
    const err = await d.head('x').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_UNREADABLE');
    expect((err as LockstepError).message).toContain(b.bucket);
    expect((err as LockstepError).hint).toMatch(/credentials/);
    expect(JSON.stringify(err)).not.toContain(b.secretAccessKey);
  });

  it('an endpoint nothing answers at is named in the hint, after the retries', async () => {
    const b = await rgwBucket();
    // a port just freed: nothing listens there
    const server = createHttpServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await new Promise((r) => server.close(r));
    const err = await driverOf(b, { endpoint }).head('x').then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_UNREADABLE');
    expect((err as LockstepError).message).toContain('ECONNREFUSED');
    expect((err as LockstepError).hint).toBe(`check endpoint (${endpoint}): is the store up, and reachable from this host (its name, a firewall, a proxy)?`);
  });

  it('a missing bucket says so', async () => {
    const b = await rgwBucket();
    const d = driverOf(b, { bucket: `${b.bucket}-nope` });
    const err = await d.put('x', Buffer.from('x')).then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_WRITE_FAILED');
    expect((err as LockstepError).hint).toMatch(/create the bucket/);
  });
});

describe('s3 driver: unfinished multipart uploads', () => {
  it('an upload a killed writer left is counted by a dry run and aborted by the sweep; one outside the prefix or younger is left', async () => {
    const b = await rgwBucket();
    const client = clientOf(b);
    const started = async (key: string, size: number) => {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: b.bucket, Key: key }));
      await client.send(new UploadPartCommand({ Bucket: b.bucket, Key: key, UploadId, PartNumber: 1, Body: randomBytes(size), ContentLength: size }));
    };
    const open = async () => (await client.send(new ListMultipartUploadsCommand({ Bucket: b.bucket }))).Uploads?.map((u) => u.Key).sort() ?? [];
    try {
      await started('repo/packs/ab/left-behind', 100_000);
      await started('other/not-ours', 1000);
      const d = driverOf(b, { prefix: 'repo' });
      // an hour old at least: none yet
      expect(await d.sweepTemporary!(3_600_000, false)).toEqual({ files: 0, bytes: 0 });
      expect(await d.sweepTemporary!(0, true)).toEqual({ files: 1, bytes: 100_000 });
      expect(await open()).toEqual(['other/not-ours', 'repo/packs/ab/left-behind']);
      expect(await d.sweepTemporary!(0, false)).toEqual({ files: 1, bytes: 100_000 });
      expect(await open()).toEqual(['other/not-ours']);
    } finally {
      client.destroy();
    }
  });
});

describe('s3 driver: a download cut off part way', () => {
  it('is asked for again: the whole object and a range come back right; a body cut every time fails, naming the object', () =>
    behindProxy(async (b, proxy) => {
      const body = randomBytes(1024 * 1024);
      const direct = driverOf(b);
      await direct.put('big', body);
      const d = driverOf(b, { endpoint: proxy.endpoint });
      proxy.cutGets(2);
      expect((await d.getBuffer!('big')).equals(body)).toBe(true);
      expect(proxy.cut()).toBe(2);
      proxy.cutGets(1);
      expect((await d.getBuffer!('big', { start: 1000, end: 600_999 })).equals(body.subarray(1000, 601_000))).toBe(true);
      expect(proxy.cut()).toBe(3);
      proxy.cutGets(100);
      const err = await d.getBuffer!('big').then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(LockstepError);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_UNREADABLE');
      expect((err as LockstepError).message).toContain('big');
      expect(proxy.cut()).toBe(3 + 6);
    }), 60_000);
});

describe('s3 driver: an upload cut off part way', () => {
  it('a buffer put is sent again when its connection is reset, and the object is whole', () =>
    behindProxy(async (b, proxy) => {
      const body = randomBytes(1024 * 1024);
      const d = driverOf(b, { endpoint: proxy.endpoint });
      proxy.cutPuts(2, '/put-buffer');
      await d.put('put-buffer', body);
      expect(proxy.cut()).toBe(2);
      expect((await d.getBuffer!('put-buffer')).equals(body)).toBe(true);
    }), 60_000);

  it('a stream put as a multipart upload sends a part again when its connection is reset, and the object is whole', () =>
    behindProxy(async (b, proxy) => {
      const body = randomBytes(PART_SIZE + 1024 * 1024);
      const d = driverOf(b, { endpoint: proxy.endpoint });
      proxy.cutPuts(2, 'partNumber=');
      await d.put('streamed', Readable.from([body.subarray(0, PART_SIZE / 2), body.subarray(PART_SIZE / 2)]));
      expect(proxy.cut()).toBe(2);
      const direct = driverOf(b);
      expect((await direct.getBuffer!('streamed')).equals(body)).toBe(true);
    }), 60_000);
});

describe('s3 driver: a store that ignores the delimiter', () => {
  it('one-level listings are made from its full listing: each folder once, the same as from a store that honours it', async () => {
    // an S3-compatible endpoint whose ListObjectsV2 lists every key under the prefix, whatever the delimiter
    const keys = ['sh/a', 'sh/b/c', 'sh/b/d/e', 'sh/b/d/f', 'sh/g/h'];
    const asked: string[] = [];
    const server = createHttpServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      asked.push(url.searchParams.get('delimiter') ?? '');
      const prefix = url.searchParams.get('prefix') ?? '';
      const under = keys.filter((k) => k.startsWith(prefix));
      res.setHeader('content-type', 'application/xml');
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>${prefix}</Prefix>` +
          `<KeyCount>${under.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${under.map((k) => `<Contents><Key>${k}</Key><Size>1</Size></Contents>`).join('')}</ListBucketResult>`,
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const d = s3Driver.open({ bucket: 'bkt', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'k', secretAccessKey: 's' }, '/');
      const level = async (prefix: string) => (await collected(d.listShallow!(prefix))).sort();
      expect(await level('sh/')).toEqual(['sh/a', 'sh/b/', 'sh/g/']);
      expect(await level('sh/b/')).toEqual(['sh/b/c', 'sh/b/d/']);
      expect(asked).toEqual(['/', '/']);
      d.destroy();
    } finally {
      server.close();
    }
  });
});

describe('a commit on s3: an answer lost', () => {
  it("a manifest the store took whose answer never came back is this backup's: committed, not failed as a backup that already exists; another backup's under the same id still is", () =>
    behindProxy(async (b, proxy) => {
      await Repository.init(driverOf(b));
      const repo = await Repository.open(driverOf(b, { endpoint: proxy.endpoint }));
      const at = '2026-12-03T10:10:10.000Z';
      const m: Manifest = { version: MANIFEST_VERSION, backupId: '20261203-101010-n', name: 'n', cluster: 'test', repositoryId: repo.id, status: 'complete', startedAt: at, committedAt: at, topology: [], components: [], report: {} as BackupReport };
      proxy.cutPutAnswers(1, 'manifest.json');
      await repo.commitManifest(m);
      expect(proxy.cut()).toBe(1);
      expect(await repo.readManifest(m.backupId)).toEqual(m);
      const err = await repo.commitManifest({ ...m, name: 'other' }).then(() => undefined, (e: unknown) => e);
      expect((err as LockstepError).code).toBe('LOCKSTEP_E_BACKUP_EXISTS');
    }, 0), 60_000);
});

describe('repo init and the lock probe on s3: an answer lost', () => {
  it('an init whose config the store took is done, not "a repository already exists"; a probe write likewise does not make the store look unsafe', () =>
    behindProxy(async (b, proxy) => {
      const d = driverOf(b, { endpoint: proxy.endpoint });
      proxy.cutPutAnswers(1, 'lockstep-repo.json');
      const repo = await Repository.init(d);
      expect(proxy.cut()).toBe(1);
      expect((await Repository.open(driverOf(b))).id).toBe(repo.id);
      // a second init is still refused
      const again = await Repository.init(d).then(() => undefined, (e: unknown) => e);
      expect((again as LockstepError).code).toBe('LOCKSTEP_E_REPO_EXISTS');
      proxy.cutPutAnswers(1, 'locks/probe-');
      const lock = await RepoLock.acquire(d, 'backup');
      expect(proxy.cut()).toBe(2);
      await lock.release();
    }, 0), 60_000);
});

describe('the repository lock on s3: an answer lost', () => {
  it('a lock the store took whose answer never came back is ours: taken, not refused as held by this very process', () =>
    behindProxy(async (b, proxy) => {
      const d = driverOf(b, { endpoint: proxy.endpoint });
      proxy.cutPutAnswers(1, 'locks/exclusive.json');
      const lock = await RepoLock.acquire(d, 'backup');
      expect(proxy.cut()).toBe(1);
      // held: another writer is refused, naming it
      const other = await RepoLock.acquire(driverOf(b), 'prune').then(() => undefined, (e: unknown) => e);
      expect((other as LockstepError).code).toBe('LOCKSTEP_E_REPO_LOCKED');
      await lock.release();
      // and let go of
      const again = await RepoLock.acquire(d, 'backup');
      await again.release();
    }, 0), 60_000);
});

describe('s3 driver: batch deletes', () => {
  const isBatch = (r: SeenRequest) => r.method === 'POST' && /[?&]delete(=[^&]*)?(&|$)/.test(r.url);
  const xml = (inner: string) => `<?xml version="1.0" encoding="UTF-8"?>${inner}`;

  /**
   * prune through a proxy (`refuse`: it answers every DeleteObjects 501, a store without
   * it): two backups, the older given up, and 30 chunks and the two backups' packs nobody
   * references. What the store was asked: batches, and single deletes of chunks and packs.
   */
  async function pruneThrough(refuse: boolean, versioned = false) {
    const b = await rgwBucket();
    const versioning = async (Status: 'Enabled' | 'Suspended') => {
      const client = clientOf(b);
      await client.send(new PutBucketVersioningCommand({ Bucket: b.bucket, VersioningConfiguration: { Status } }));
      client.destroy();
    };
    // versioned: everything written while versioning is on, then suspended (RGW 16 ignores create-if-absent while it is on)
    if (versioned) await versioning('Enabled');
    const asked = { batches: 0, singles: 0 };
    const proxy = await answeringProxy(b.endpoint, (r) => {
      if (isBatch(r)) {
        asked.batches++;
        if (refuse) return { status: 501, body: xml('<Error><Code>NotImplemented</Code><Message>not implemented</Message></Error>') };
      }
      if (r.method === 'DELETE' && /\/(chunks|packs)\//.test(r.url)) asked.singles++;
      return undefined;
    });
    try {
      const d = driverOf(b, { endpoint: proxy.endpoint });
      const repo = await Repository.init(d);
      const ids = ['20261205-010000-one', '20261205-020000-two'];
      for (const backupId of ids) {
        const at = new Date().toISOString();
        await repo.commitManifest({ version: MANIFEST_VERSION, backupId, name: backupId.slice(16), cluster: 'test', repositoryId: repo.id, status: 'complete', startedAt: at, committedAt: at, topology: [], components: [], report: {} as BackupReport });
        await d.put(`backups/${backupId}/node1/data.index`, Buffer.from('an index'));
        await d.put(`packs/${backupId.slice(-3)}.pack`, Buffer.from('data'));
      }
      await Promise.all(Array.from({ length: 30 }, (_, i) => d.put(`chunks/c${i}`, Buffer.alloc(i + 1))));
      if (versioned) await versioning('Suspended');
      const report = await prune(repo, { keepLast: 1 });
      const direct = driverOf(b);
      return { report, asked, bucket: b.bucket, left: (await collected(direct.list(''))).filter((k) => k !== 'lockstep-repo.json').sort() };
    } finally {
      await proxy.close();
    }
  }

  it('prune deletes in batches where the store has them: every unreferenced object goes, none one a request', async () => {
    const { report, asked, left } = await pruneThrough(false);
    expect(report.removed).toEqual(['20261205-010000-one']);
    expect([report.objectsDeleted, report.bytesFreed]).toEqual([32, (30 * 31) / 2 + 8]);
    expect(left).toEqual(['backups/20261205-020000-two/manifest.json', 'backups/20261205-020000-two/node1/data.index']);
    expect(asked.singles).toBe(0);
    expect(asked.batches).toBeGreaterThanOrEqual(1);
    expect(report.warnings).toBeUndefined();
  }, 60_000);

  it('a bucket that kept old versions: prune deletes the same, and its report warns that their space is not given back', async () => {
    const { report, left, bucket } = await pruneThrough(false, true);
    expect([report.objectsDeleted, report.bytesFreed]).toEqual([32, (30 * 31) / 2 + 8]);
    expect(left).toEqual(['backups/20261205-020000-two/manifest.json', 'backups/20261205-020000-two/node1/data.index']);
    expect(report.warnings).toHaveLength(1);
    expect(report.warnings![0]).toMatch(new RegExp(`^s3://${bucket}/ at \\S+ had bucket versioning on \\(now suspended\\): of the 32 objects \\(473 bytes\\) this prune deleted`));
    expect(report.warnings![0]).toContain('NoncurrentVersionExpiration');
    // and so it is: every chunk deleted is still there as an old version
    const client = clientOf(await rgwBucket());
    const versions = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'chunks/' }));
    client.destroy();
    expect(new Set((versions.Versions ?? []).map((v) => v.Key)).size).toBe(30);
  }, 60_000);

  it("a bucket with versioning on: the driver says so; RGW then ignores create-if-absent, and the lock's refusal names versioning", async () => {
    const b = await rgwBucket();
    const d = driverOf(b);
    expect(await d.versioning!()).toBe('off');
    const client = clientOf(b);
    await client.send(new PutBucketVersioningCommand({ Bucket: b.bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    client.destroy();
    expect(await d.versioning!()).toBe('enabled');
    const err = await RepoLock.acquire(d, 'backup').then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_NO_ATOMIC_CREATE');
    expect((err as LockstepError).hint).toContain('bucket versioning is on');
    // a key not allowed to ask: nothing said, nothing held against it
    expect(await driverOf(b, { secretAccessKey: 'not-the-secret' }).versioning!()).toBeUndefined();
  }, 60_000);

  it('a store without DeleteObjects (501): asked once, then every object goes one a request, the same as with batches', async () => {
    const { report, asked, left } = await pruneThrough(true);
    expect([report.objectsDeleted, report.bytesFreed]).toEqual([32, (30 * 31) / 2 + 8]);
    expect(left).toEqual(['backups/20261205-020000-two/manifest.json', 'backups/20261205-020000-two/node1/data.index']);
    expect([asked.batches, asked.singles]).toEqual([1, 32]);
  }, 60_000);

  it('keys a batch answer names as failed are given back for single deletes; one already gone is not', async () => {
    const b = await rgwBucket();
    const prefix = 'p/repo/';
    const proxy = await answeringProxy(b.endpoint, (r) =>
      isBatch(r)
        ? { status: 200, body: xml(`<DeleteResult><Error><Key>${prefix}k2</Key><Code>AccessDenied</Code><Message>no</Message></Error><Error><Key>${prefix}k3</Key><Code>NoSuchKey</Code><Message>gone</Message></Error></DeleteResult>`) }
        : undefined,
    );
    try {
      const d = driverOf(b, { endpoint: proxy.endpoint, prefix });
      expect(await d.deleteMany!(['k1', 'k2', 'k3'])).toEqual(['k2']);
    } finally {
      await proxy.close();
    }
  });
});
