/**
 * S3 settings for what a bucket does with the objects: `storageClass` puts the objects that
 * hold backup data (packs, chunk objects) in that class and leaves the others (config,
 * indexes, records) in the bucket's default; `serverSideEncryption` (SSE-KMS here, RGW's
 * test keys) encrypts every object written, and a copy of an index part asks for it too. Both are tried by
 * the preflight's probe write, so a class or key the store does not have fails a backup
 * before anything is frozen, naming the setting. An archive class that cannot be read at
 * once, and a KMS key without SSE-KMS, are refused in the config.
 */
import { describe, expect, it } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { checkRepositorySettings } from '../../plugins/storage/registry.js';
import { Repository } from '../../lib/repo/repository.js';
import { LockstepError } from '../../lib/errors.js';
import { uploadSnapshot } from '../../agent/transfer/upload.js';
import { answeringProxy, clientOf, driverOf, rgwBucket, type SeenRequest } from '../helpers/s3.js';
import { tempFolders } from '../helpers/temp.js';
import { quietJobContext } from '../helpers/job.js';
import { stagedData } from '../helpers/repo.js';

const temp = tempFolders();

/** a node's data (a big file cut into packed blocks, small files) backed up into `repo`; staged back, it must equal what was read */
async function backedUp(repo: Repository): Promise<{ indexKey: string; check: () => Promise<void> }> {
  const snap = await temp('snap');
  await mkdir(join(snap, 'data', 'sst'), { recursive: true });
  await writeFile(join(snap, 'data', 'table.db'), randomBytes(3 * 1024 * 1024));
  for (let i = 0; i < 10; i++) await writeFile(join(snap, 'data', 'sst', `${i}.sst`), randomBytes(5000 + i));
  const up = await uploadSnapshot(repo, snap, ['data'], { backupId: '20261205-100000-one', node: 'n1', component: 'db' }, quietJobContext());
  return {
    indexKey: up.indexKey,
    async check() {
      const { staging } = await stagedData(repo, up, temp);
      for (const rel of ['table.db', 'sst/0.sst', 'sst/9.sst']) expect((await readFile(join(staging, rel))).equals(await readFile(join(snap, 'data', rel)))).toBe(true);
    },
  };
}

describe('s3 storageClass', () => {
  it('puts packs and chunk objects in the class, leaves the rest in the default; the data reads back', async () => {
    const b = await rgwBucket();
    const repo = await Repository.init(driverOf(b, { prefix: 'repo', storageClass: 'COLD' }));
    const { check } = await backedUp(repo);
    await repo.putChunk('ab'.repeat(32), randomBytes(70_000));
    await repo.probeWrite('n1');
    const client = clientOf(b);
    try {
      const listed = (await client.send(new ListObjectsV2Command({ Bucket: b.bucket, Prefix: 'repo/' }))).Contents ?? [];
      const classOf = (prefix: string) => [...new Set(listed.filter((o) => o.Key!.startsWith(`repo/${prefix}`)).map((o) => o.StorageClass))];
      expect(classOf('packs/')).toEqual(['COLD']);
      expect(classOf('chunks/')).toEqual(['COLD']);
      const others = listed.filter((o) => !/^repo\/(packs|chunks)\//.test(o.Key!));
      expect(others.map((o) => o.Key)).toEqual(expect.arrayContaining(['repo/lockstep-repo.json', expect.stringMatching(/^repo\/backups\/20261205-100000-one\//), expect.stringMatching(/^repo\/pending\//)]));
      expect([...new Set(others.map((o) => o.StorageClass))]).toEqual(['STANDARD']);
    } finally {
      client.destroy();
    }
    await check();
  });

  it('a class the store does not have fails the probe write, naming the setting', async () => {
    const b = await rgwBucket();
    const repo = await Repository.init(driverOf(b, { storageClass: 'NO_SUCH_CLASS' }));
    const err = await repo.probeWrite('n1').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_WRITE_FAILED');
    expect((err as LockstepError).hint).toMatch(/storageClass \(NO_SUCH_CLASS\)/);
  });

  it('a write that did not ask for the class is not blamed on it when the store refuses an argument', async () => {
    const b = await rgwBucket();
    // a store that refuses every PUT as RGW refuses a class it lacks: InvalidArgument, nothing more
    const proxy = await answeringProxy(b.endpoint, (req) => (req.method === 'PUT' ? { status: 400, body: '<?xml version="1.0"?><Error><Code>InvalidArgument</Code></Error>' } : undefined));
    try {
      const d = driverOf(b, { storageClass: 'COLD', endpoint: proxy.endpoint });
      const hintOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => (e as LockstepError).hint ?? '');
      expect(await hintOf(d.put('packs/ab/abc', Buffer.from('x'), undefined, { data: true }))).toMatch(/check storageClass \(COLD\)/);
      expect(await hintOf(d.put('backups/one/manifest.json', Buffer.from('x')))).not.toMatch(/storageClass/);
    } finally {
      await proxy.close();
    }
  });
});

describe('s3 serverSideEncryption', () => {
  it('aws:kms: every object written is encrypted with the key, and a copy asks for it too; the data reads back', async () => {
    const b = await rgwBucket();
    const sse = { serverSideEncryption: 'aws:kms', sseKmsKeyId: 'lockstep-test-key' };
    const repo = await Repository.init(driverOf(b, sse));
    const { indexKey, check } = await backedUp(repo);
    const client = clientOf(b);
    try {
      const keys = ((await client.send(new ListObjectsV2Command({ Bucket: b.bucket }))).Contents ?? []).map((o) => o.Key!);
      expect(keys.some((k) => k.startsWith('packs/'))).toBe(true);
      expect(keys).toContain(indexKey);
      for (const Key of keys) {
        const head = await client.send(new HeadObjectCommand({ Bucket: b.bucket, Key }));
        expect({ Key, sse: head.ServerSideEncryption, key: head.SSEKMSKeyId }).toEqual({ Key, sse: 'aws:kms', key: 'lockstep-test-key' });
      }
    } finally {
      client.destroy();
    }
    await check();
    // CopyObject (index parts) asks for the same encryption, or the copy would get the
    // bucket's default. A store without CopyObject with SSE-KMS (RGW 16) answers 501, as the
    // proxy does here: the copy fails (the upload then writes its index whole), and a driver
    // opened again for that store offers no copy, so later backups do not try again
    const copies: SeenRequest[] = [];
    const proxy = await answeringProxy(b.endpoint, (req) => {
      if (!req.headers['x-amz-copy-source']) return undefined;
      copies.push(req);
      return { status: 501, body: '<?xml version="1.0"?><Error><Code>NotImplemented</Code></Error>' };
    });
    try {
      const d = driverOf(b, { ...sse, endpoint: proxy.endpoint });
      const err = await d.copy!(indexKey, 'copied/index').then(() => undefined, (e: unknown) => e);
      expect((err as LockstepError).message).toMatch(/cannot write copied\/index \(NotImplemented \(HTTP 501\)\)/);
      expect(copies).toHaveLength(1);
      expect(copies[0]!.headers).toMatchObject({ 'x-amz-server-side-encryption': 'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': 'lockstep-test-key' });
      expect(driverOf(b, { ...sse, endpoint: proxy.endpoint }).copy).toBeUndefined();
      // (the store without that encryption, or another store, still copies)
      expect(driverOf(b, { endpoint: proxy.endpoint }).copy).toBeTypeOf('function');
      expect(driverOf(b, sse).copy).toBeTypeOf('function');
    } finally {
      await proxy.close();
    }
  });

  it('a key the store does not know fails the probe write, naming sseKmsKeyId', async () => {
    const b = await rgwBucket();
    const repo = await Repository.init(driverOf(b, {}));
    const wrong = await Repository.open(driverOf(b, { serverSideEncryption: 'aws:kms', sseKmsKeyId: 'no-such-key' }));
    const err = await wrong.probeWrite('n1').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_WRITE_FAILED');
    expect((err as LockstepError).hint).toMatch(/sseKmsKeyId \(no-such-key\)/);
    expect(repo.id).toBe(wrong.id);
  });
});

describe('s3 settings the config refuses', () => {
  const problems = (own: Record<string, unknown>) => checkRepositorySettings({ driver: 's3', bucket: 'backups', ...own }, 'repository');

  it('an archive class whose objects need a restore request before they can be read', () => {
    for (const storageClass of ['GLACIER', 'deep_archive']) {
      expect(problems({ storageClass })).toEqual([{ path: 'repository.storageClass', message: expect.stringMatching(/cannot be read without a restore request.*verify, restore and prune would fail/) }]);
    }
    expect(problems({ storageClass: 'GLACIER_IR' })).toEqual([]);
    expect(problems({ storageClass: 'STANDARD IA' })[0]?.path).toBe('repository.storageClass');
  });

  it('a KMS key without SSE-KMS', () => {
    expect(problems({ sseKmsKeyId: 'k' })).toEqual([{ path: 'repository.sseKmsKeyId', message: expect.stringMatching(/needs serverSideEncryption: aws:kms.*not set/) }]);
    expect(problems({ serverSideEncryption: 'AES256', sseKmsKeyId: 'k' })[0]?.message).toMatch(/it is AES256/);
    expect(problems({ serverSideEncryption: 'aws:kms', sseKmsKeyId: 'k', storageClass: 'STANDARD_IA' })).toEqual([]);
    expect(problems({ serverSideEncryption: 'aws:kms:dsse' })).toEqual([]);
    expect(problems({ serverSideEncryption: 'sha256' })[0]?.path).toBe('repository.serverSideEncryption');
  });
});
