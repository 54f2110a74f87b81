import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { s3Driver } from '../../plugins/storage/s3.js';
import { storageConformance } from '../conformance/storage.js';
import { LockstepError } from '../../lib/errors.js';
import { rgwBucket } from '../helpers/s3.js';

let bucket: Awaited<ReturnType<typeof rgwBucket>> | undefined;

// every open() is a fresh prefix in one bucket on the run's RGW
storageConformance('s3 (Ceph RGW)', async () => {
  bucket ??= await rgwBucket();
  const { driver: _d, ...settings } = bucket;
  return s3Driver.open({ ...settings, prefix: `t-${randomBytes(4).toString('hex')}/repo` }, '/');
});

describe('s3 driver errors', () => {
  it('wrong credentials: a clear error naming the location, no secret in it', async () => {
    const b = await rgwBucket();
    const d = s3Driver.open({ ...b, driver: undefined, secretAccessKey: 'not-the-secret' }, '/');
    const err = await d.head('x').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_UNREADABLE');
    expect((err as LockstepError).message).toContain(b.bucket);
    expect((err as LockstepError).hint).toMatch(/credentials/);
    expect(JSON.stringify(err)).not.toContain(b.secretAccessKey);
  });

  it('a missing bucket says so', async () => {
    const b = await rgwBucket();
    const d = s3Driver.open({ ...b, driver: undefined, bucket: `${b.bucket}-nope` }, '/');
    const err = await d.put('x', Buffer.from('x')).then(() => undefined, (e: unknown) => e);
    expect((err as LockstepError).code).toBe('LOCKSTEP_E_REPO_WRITE_FAILED');
    expect((err as LockstepError).hint).toMatch(/create the bucket/);
  });
});
