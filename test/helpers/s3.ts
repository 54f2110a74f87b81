/** Test helpers for S3: a fresh bucket on the run's RGW, and driver settings for it. */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';

export interface S3Settings {
  driver: 's3';
  bucket: string;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  prefix?: string;
  [k: string]: unknown;
}

/** a new, empty bucket on the test run's RGW */
export async function rgwBucket(): Promise<S3Settings> {
  const rgw = inject('rgw');
  const bucket = `lockstep-${randomBytes(6).toString('hex')}`;
  const client = new S3Client({ region: 'us-east-1', endpoint: rgw.endpoint, forcePathStyle: true, credentials: rgw });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return { driver: 's3', bucket, endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey };
}
