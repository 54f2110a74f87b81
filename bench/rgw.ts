/**
 * A throw-away S3 endpoint for the benches: Ceph RGW on this machine (demo/rgw.ts, its
 * data in memory), one bucket, emptied between runs.
 */
import { CreateBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startRgw as startRgwDaemons } from '../demo/rgw.js';

// the SDK's notice that its 2027 releases need Node 22, printed into the bench's output (plugins/storage/s3.ts silences it too)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface BenchRgw {
  /** the repository settings of the bucket (s3 driver) */
  settings: Record<string, unknown>;
  /** objects and bytes in the bucket, and how many backups (manifests) */
  size(): Promise<{ objects: number; bytes: number; backups: number }>;
  /** every object deleted: a fresh repository for the next run */
  empty(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRgw(root: string): Promise<BenchRgw> {
  const rgw = await startRgwDaemons(root, 18480);
  const { endpoint, accessKeyId, secretAccessKey } = rgw;
  const bucket = 'lockstep-bench';
  const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));

  async function* objects(): AsyncGenerator<{ key: string; size: number }> {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) yield { key: o.Key!, size: o.Size ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  return {
    settings: { driver: 's3', bucket, endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId, secretAccessKey },
    async size() {
      const out = { objects: 0, bytes: 0, backups: 0 };
      for await (const o of objects()) {
        out.objects++;
        out.bytes += o.size;
        if (o.key.endsWith('/manifest.json')) out.backups++;
      }
      return out;
    },
    async empty() {
      // a page at a time from the start, until none is left (deleting while paging on would skip some)
      for (;;) {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
        const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
        if (keys.length === 0) return;
        await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
      }
    },
    async stop() {
      client.destroy();
      await rgw.stop();
    },
  };
}
