/**
 * The `s3` storage driver: any S3-compatible endpoint (AWS, Ceph RGW, MinIO …).
 * Credentials come from the settings or the standard AWS chain (environment, shared
 * files, instance roles); they are signed into requests, never sent or logged.
 * Streams go up as multipart uploads with parts and concurrency chosen for throughput;
 * every call is retried with backoff on throttling, 5xx and network errors.
 */
import type { Readable } from 'node:stream';
import type { S3Client, S3ClientConfig, StorageClass } from '@aws-sdk/client-s3';
import { Type, type Static } from '@sinclair/typebox';
import type { ConfigProblem } from '../../lib/config.js';
import { LockstepError, errnoCode } from '../../lib/errors.js';
import { checkObjectKey, DELETE_MANY_MAX, readAll, type ByteRange, type ObjectInfo, type PutOptions, type StorageDriver, type StorageDriverFactory } from './types.js';

/** 16 MiB parts, 4 at a time: ~64 MiB in flight per stream, near the endpoint's limit measured on loopback RGW */
export const PART_SIZE = 16 * 1024 * 1024;
export const PART_CONCURRENCY = 4;
const RETRIES = 5;
const CONNECT_TIMEOUT_MS = 10_000;
/** no byte either way for this long: the request has failed */
const IDLE_TIMEOUT_MS = 120_000;

const s3Settings = Type.Object(
  {
    bucket: Type.String({ minLength: 3 }),
    prefix: Type.Optional(Type.String()),
    endpoint: Type.Optional(Type.String({ pattern: '^https?://' })),
    region: Type.Optional(Type.String({ minLength: 1 })),
    forcePathStyle: Type.Optional(Type.Boolean()),
    accessKeyId: Type.Optional(Type.String({ minLength: 1 })),
    secretAccessKey: Type.Optional(Type.String({ minLength: 1 })),
    /** false: the store ignores If-None-Match: * on PutObject (lockstep then refuses to take locks there); otherwise probed before each lock */
    conditionalWrites: Type.Optional(Type.Boolean()),
    /** false: the store has no CopyObject (index parts are then written again, not copied) */
    copyObject: Type.Optional(Type.Boolean()),
    /** the storage class of objects that hold backup data (packs, chunk objects); the rest stays in the bucket's default */
    storageClass: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' })),
    /** server-side encryption of every object written: SSE-S3 (AES256) or SSE-KMS (aws:kms, aws:kms:dsse) */
    serverSideEncryption: Type.Optional(Type.Union([Type.Literal('AES256'), Type.Literal('aws:kms'), Type.Literal('aws:kms:dsse')])),
    /** the KMS key of SSE-KMS (its id, ARN or alias); none: the account's default key for S3 */
    sseKmsKeyId: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

type S3Settings = Static<typeof s3Settings>;

/**
 * Storage classes whose objects cannot be read until a restore request has thawed them
 * (hours): a backup stored there could not be verified, restored or pruned by lockstep.
 */
const ARCHIVE_CLASSES = ['GLACIER', 'DEEP_ARCHIVE'];

/** what the schema cannot tell about s3 settings (see StorageDriverFactory.checkSettings) */
function checkS3Settings(settings: S3Settings, prefix: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const cls = settings.storageClass;
  if (cls !== undefined && ARCHIVE_CLASSES.includes(cls.toUpperCase())) {
    problems.push({
      path: `${prefix}.storageClass`,
      message: `${cls} objects cannot be read without a restore request first (hours): verify, restore and prune would fail. Use a class read at once (STANDARD_IA, ONEZONE_IA, GLACIER_IR, INTELLIGENT_TIERING), or a lifecycle rule on the bucket if older backups are to be archived`,
    });
  }
  if (settings.sseKmsKeyId !== undefined && !settings.serverSideEncryption?.startsWith('aws:kms')) {
    problems.push({ path: `${prefix}.sseKmsKeyId`, message: `a KMS key needs serverSideEncryption: aws:kms (or aws:kms:dsse); it is ${settings.serverSideEncryption ?? 'not set'}` });
  }
  return problems;
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function errName(err: unknown): string {
  return err instanceof Error ? err.name : String(err);
}

function retryable(err: unknown): boolean {
  const status = httpStatus(err);
  // 501: the store does not have the operation; asking again will not change that
  if (status !== undefined) return status === 429 || (status >= 500 && status !== 501) || errName(err) === 'SlowDown' || errName(err) === 'RequestTimeout';
  // no HTTP answer at all: a network error
  const code = (err as { code?: string })?.code;
  return err instanceof Error && errName(err) !== 'AbortError' && (code !== undefined || /socket|network|ECONN|EPIPE|timeout/i.test(err.message));
}

const rangeHeader = (range?: ByteRange) => (range ? `bytes=${range.start}-${range.end}` : undefined);

/**
 * A response body read whole, into one buffer of the announced length; one that ends
 * short, or runs long, fails as a network error does (retried).
 */
async function bodyBytes(body: Readable, length: number | undefined): Promise<Buffer> {
  if (length === undefined) return readAll(body);
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (at + chunk.length > length) {
      body.destroy();
      throw Object.assign(new Error(`the response body ran past the ${length} bytes announced`), { code: 'ERR_BODY_LENGTH' });
    }
    at += chunk.copy(out, at);
  }
  if (at !== length) throw Object.assign(new Error(`the response body ended after ${at} of the ${length} bytes announced`), { code: 'ERR_BODY_LENGTH' });
  return out;
}

/**
 * The SDK, loaded on first use: it is ~25 MiB of an agent's memory and a good part of
 * its start-up time, which agents writing to a filesystem repository do not pay. Its
 * multipart uploader (lib-storage, ~1 MiB more) only once a stream is put: a backup puts
 * buffers (packs, chunk objects, index parts) and never loads it.
 */
const loadSdk = () => import('@aws-sdk/client-s3');
type Sdk = Awaited<ReturnType<typeof loadSdk>>;
let sdkLoading: Promise<Sdk> | undefined;
const loadUploader = () => import('@aws-sdk/lib-storage').then((m) => m.Upload);
let uploaderLoading: ReturnType<typeof loadUploader> | undefined;

// lockstep supports the Node versions in package.json; the SDK's notice about its own future plans is not for operators
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/**
 * Stores (endpoint, bucket and the encryption asked for) that answered a CopyObject with 501:
 * a driver opened for one of them again, in this process, offers no copy, so each later
 * backup writes its index whole at once instead of failing a copy first and warning (Ceph
 * RGW 16 has no CopyObject with SSE-KMS). Forgotten when the process restarts.
 */
const copyRefused = new Set<string>();

/** errors of a request that got no answer from the store */
const NO_ANSWER = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly capabilities: { atomicCreateIfAbsent: boolean; rangeRead: boolean };
  readonly location: string;
  private readonly config: S3ClientConfig;
  private connecting: Promise<{ sdk: Sdk; client: S3Client }> | undefined;
  /** the multipart uploader's client (streams only): the SDK's own retries, with backoff, on each part */
  private partClient: S3Client | undefined;
  private readonly bucket: string;
  private readonly prefix: string;
  /** false once the store refused a DeleteObjects as a request it does not take */
  private batchDeletes = true;
  /** the server-side encryption every write asks for (none: the bucket's default) */
  private readonly sse: { ServerSideEncryption?: 'AES256' | 'aws:kms' | 'aws:kms:dsse'; SSEKMSKeyId?: string };
  /** the storage class of data objects (none: the bucket's default) */
  private readonly dataClass: string | undefined;

  /** CopyObject, unless the settings say the store has none */
  readonly copy?: (from: string, to: string, signal?: AbortSignal) => Promise<void>;

  /** what `copyRefused` knows this store by */
  private readonly copyKey: string;
  /** where requests go, as hints name it: the endpoint, or AWS's region */
  private readonly reaches: string;

  constructor(settings: S3Settings) {
    this.sse = {
      ...(settings.serverSideEncryption ? { ServerSideEncryption: settings.serverSideEncryption } : {}),
      ...(settings.sseKmsKeyId ? { SSEKMSKeyId: settings.sseKmsKeyId } : {}),
    };
    this.copyKey = `${settings.endpoint ?? 'aws'} ${settings.bucket} ${settings.serverSideEncryption ?? ''}`;
    if (settings.copyObject !== false && !copyRefused.has(this.copyKey)) this.copy = (from, to, signal) => this.copyObject(from, to, signal);
    this.dataClass = settings.storageClass;
    this.bucket = settings.bucket;
    this.prefix = settings.prefix ? `${settings.prefix.replace(/^\/+|\/+$/g, '')}/` : '';
    this.location = `s3://${this.bucket}/${this.prefix}${settings.endpoint ? ` at ${settings.endpoint}` : ''}`;
    this.reaches = settings.endpoint ?? `AWS in ${settings.region ?? process.env.AWS_REGION ?? 'us-east-1'}`;
    // the store's own claim; the repository probes it before relying on it for locks
    this.capabilities = { atomicCreateIfAbsent: settings.conditionalWrites ?? true, rangeRead: true };
    const config: S3ClientConfig = {
      region: settings.region ?? process.env.AWS_REGION ?? 'us-east-1',
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
      // our own hashes protect the data; the SDK's streaming checksums (aws-chunked) break S3-compatible stores
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1, // retries are ours (below), so they are the same for every call
      // a connection that never opens, or a socket that goes quiet mid-request or mid-body,
      // fails (and is retried) instead of holding a backup or a restore for ever
      requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: IDLE_TIMEOUT_MS },
    };
    if (settings.accessKeyId && settings.secretAccessKey) {
      config.credentials = { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey };
    }
    this.config = config;
  }

  private s3(): Promise<{ sdk: Sdk; client: S3Client }> {
    this.connecting ??= (sdkLoading ??= loadSdk()).then((sdk) => ({ sdk, client: new sdk.S3Client(this.config) }));
    return this.connecting;
  }

  private key(key: string): string {
    return this.prefix + checkObjectKey(key);
  }

  /** `classed`: the failed request asked for the data's storage class */
  private wrap(err: unknown, op: 'read' | 'write' | 'delete' | 'list', key: string, classed = false): LockstepError {
    if (err instanceof LockstepError) return err;
    const status = httpStatus(err);
    const name = errName(err);
    const hint = this.hintFor(name, status, err instanceof Error ? err.message : String(err), classed, errnoCode(err));
    // a service exception carries $fault (client or server)
    const what = (err as { $fault?: string })?.$fault !== undefined || status !== undefined ? `${name}${status ? ` (HTTP ${status})` : ''}` : err instanceof Error ? err.message : String(err);
    return new LockstepError(op === 'read' || op === 'list' ? 'LOCKSTEP_E_REPO_UNREADABLE' : 'LOCKSTEP_E_REPO_WRITE_FAILED', `repository ${this.location}: cannot ${op} ${key} (${what})`, {
      cause: err,
      hint,
    });
  }

  /** what an operator can do about a failed call, where the error says */
  private hintFor(name: string, status: number | undefined, message: string, classed: boolean, errno: string | undefined): string | undefined {
    // (RGW answers a KMS key it cannot find with InvalidAccessKeyId: the KMS case comes first)
    if (this.sse.ServerSideEncryption?.startsWith('aws:kms') && (name.startsWith('KMS.') || /\bkms\b/i.test(message))) {
      return `check sseKmsKeyId (${this.sse.SSEKMSKeyId ?? "none: the account's default key"}): the key must exist in the bucket's region and the credentials must be allowed to use it (the store said: ${message})`;
    }
    // RGW answers a class it lacks with InvalidArgument and no more (AWS: InvalidStorageClass): named only for a write that asked for the class
    if (classed && (name === 'InvalidStorageClass' || name === 'InvalidArgument')) return `check storageClass (${this.dataClass}): does the store have that class? (the store said: ${message})`;
    if (status === 403 || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') return 'check the credentials (repository settings or the AWS environment/profile) and the bucket policy';
    if (name === 'NoSuchBucket') return `create the bucket "${this.bucket}" first`;
    // no answer at all (retried already): the endpoint is wrong, down, or not reachable from here
    if ((errno && NO_ANSWER.has(errno)) || name === 'TimeoutError') return `check endpoint (${this.reaches}): is the store up, and reachable from this host (its name, a firewall, a proxy)?`;
    if (name === 'CredentialsProviderError') return 'no credentials found: set accessKeyId/secretAccessKey in the repository settings or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY';
    return undefined;
  }

  /** Run a call, retrying what is worth retrying with exponential backoff and jitter. */
  private async retry<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= RETRIES || !retryable(err) || signal?.aborted) throw err;
        const delay = Math.min(8000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** what every write of `opts`'s kind asks for besides its key and body: encryption, and for data its storage class */
  private writeParams(opts?: PutOptions): typeof this.sse & { StorageClass?: StorageClass } {
    return opts?.data && this.dataClass ? { ...this.sse, StorageClass: this.dataClass as StorageClass } : this.sse;
  }

  async put(key: string, body: Buffer | Readable, signal?: AbortSignal, opts?: PutOptions): Promise<void> {
    const Key = this.key(key);
    const params = this.writeParams(opts);
    try {
      const { sdk, client } = await this.s3();
      if (Buffer.isBuffer(body)) {
        await this.retry(() => client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length, ...params }), { abortSignal: signal }), signal);
        return;
      }
      // a stream can be read once: the upload retries its parts (through a client of its own
      // that retries, as ours does not: its calls go through `retry`), not the whole
      const Upload = await (uploaderLoading ??= loadUploader());
      this.partClient ??= new sdk.S3Client({ ...this.config, maxAttempts: RETRIES + 1 });
      const upload = new Upload({ client: this.partClient, params: { Bucket: this.bucket, Key, Body: body, ...params }, partSize: PART_SIZE, queueSize: PART_CONCURRENCY, leavePartsOnError: false });
      signal?.addEventListener('abort', () => void upload.abort(), { once: true });
      await upload.done();
    } catch (err) {
      throw this.wrap(err, 'write', key, params.StorageClass !== undefined);
    }
  }

  /** a successful PutObject is already durable */
  async flush(): Promise<void> {}

  /** durable whatever `opts` says: a successful PutObject is */
  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    const Key = this.key(key);
    try {
      const { sdk, client } = await this.s3();
      await this.retry(() => client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length, IfNoneMatch: '*', ...this.sse })));
      return true;
    } catch (err) {
      // 412: it exists; 409: a concurrent conditional write won
      const status = httpStatus(err);
      if (status === 412 || status === 409) return false;
      throw this.wrap(err, 'write', key);
    }
  }

  async get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Readable> {
    const Key = this.key(key);
    try {
      const { sdk, client } = await this.s3();
      const res = await this.retry(() => client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key, Range: rangeHeader(range) }), { abortSignal: signal }), signal);
      return res.Body as Readable;
    } catch (err) {
      throw this.readError(err, key);
    }
  }

  /**
   * An object or a range of it, whole in one buffer: every read a repository makes. Unlike
   * a stream, a body cut off part way (a connection reset, a socket gone quiet, fewer bytes
   * than announced) is asked for again, with the same retries as the request.
   */
  async getBuffer(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Buffer> {
    const Key = this.key(key);
    try {
      const { sdk, client } = await this.s3();
      return await this.retry(async () => {
        const res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key, Range: rangeHeader(range) }), { abortSignal: signal });
        return bodyBytes(res.Body as Readable, res.ContentLength);
      }, signal);
    } catch (err) {
      throw this.readError(err, key);
    }
  }

  private readError(err: unknown, key: string): LockstepError {
    if (httpStatus(err) === 404 || errName(err) === 'NoSuchKey') {
      return new LockstepError('LOCKSTEP_E_OBJECT_NOT_FOUND', `repository ${this.location}: ${key} is missing`, { cause: err });
    }
    return this.wrap(err, 'read', key);
  }

  /** CopyObject: the store copies the bytes itself */
  private async copyObject(from: string, to: string, signal?: AbortSignal): Promise<void> {
    const source = this.key(from);
    try {
      const { sdk, client } = await this.s3();
      // the source is "bucket/key", URL-encoded (but for its slashes); the copy is encrypted as
      // every write is (CopyObject otherwise gives it the bucket's default). It is an index
      // part, never data: the bucket's default class, which a copy without one gets on AWS
      const CopySource = `${this.bucket}/${source.split('/').map(encodeURIComponent).join('/')}`;
      await this.retry(() => client.send(new sdk.CopyObjectCommand({ Bucket: this.bucket, Key: this.key(to), CopySource, ...this.sse }), { abortSignal: signal }), signal);
    } catch (err) {
      if (httpStatus(err) === 404 || errName(err) === 'NoSuchKey') {
        throw new LockstepError('LOCKSTEP_E_OBJECT_NOT_FOUND', `repository ${this.location}: ${from} is missing`, { cause: err });
      }
      if (httpStatus(err) === 501) copyRefused.add(this.copyKey);
      throw this.wrap(err, 'write', to);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.key(key);
    try {
      const { sdk, client } = await this.s3();
      const res = await this.retry(() => client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key })));
      return { size: res.ContentLength ?? 0, modified: res.LastModified?.getTime() };
    } catch (err) {
      if (httpStatus(err) === 404 || errName(err) === 'NotFound') return undefined;
      throw this.wrap(err, 'read', key);
    }
  }

  list(prefix: string): AsyncIterable<string> {
    return this.listing(prefix, false);
  }

  async *listSized(prefix: string): AsyncIterable<{ key: string; size: number }> {
    for await (const res of this.pages(prefix, false)) yield* this.sized(res);
  }

  async listPage(prefix: string, after: string, max: number): Promise<{ objects: { key: string; size: number }[]; more: boolean }> {
    const res = await this.listRequest(prefix, { StartAfter: this.prefix + after, MaxKeys: max });
    return { objects: this.sized(res), more: res.IsTruncated === true };
  }

  listShallow(prefix: string): AsyncIterable<string> {
    return this.listing(prefix, true);
  }

  /** keys under `prefix`; `shallow`: with the delimiter '/', folders below as their prefixes */
  private async *listing(prefix: string, shallow: boolean): AsyncIterable<string> {
    let folders: Set<string> | undefined;
    for await (const res of this.pages(prefix, shallow)) {
      for (const p of res.CommonPrefixes ?? []) if (p.Prefix) yield p.Prefix.slice(this.prefix.length);
      for (const o of res.Contents ?? []) {
        if (!o.Key) continue;
        const key = o.Key.slice(this.prefix.length);
        // a store that ignores the delimiter lists every key below: its folders are made here, each once
        const slash = shallow ? key.indexOf('/', prefix.length) : -1;
        if (slash < 0) yield key;
        else if (!(folders ??= new Set()).has(key.slice(0, slash + 1))) {
          folders.add(key.slice(0, slash + 1));
          yield key.slice(0, slash + 1);
        }
      }
    }
  }

  /** the listing's pages (`shallow`: with the delimiter '/') */
  private async *pages(prefix: string, shallow: boolean) {
    let token: string | undefined;
    do {
      const res = await this.listRequest(prefix, { ContinuationToken: token, ...(shallow ? { Delimiter: '/' } : {}) });
      yield res;
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  }

  /** one ListObjectsV2 request under `prefix`, retried; `more`: where it starts, how many, the delimiter */
  private async listRequest(prefix: string, more: { ContinuationToken?: string; StartAfter?: string; MaxKeys?: number; Delimiter?: string }) {
    try {
      const { sdk, client } = await this.s3();
      return await this.retry(() => client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ...more })));
    } catch (err) {
      throw this.wrap(err, 'list', prefix);
    }
  }

  /** a listing page's objects, keys under this driver's prefix, with their sizes */
  private sized(res: { Contents?: { Key?: string; Size?: number }[] }): { key: string; size: number }[] {
    const objects: { key: string; size: number }[] = [];
    for (const o of res.Contents ?? []) if (o.Key) objects.push({ key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 });
    return objects;
  }

  async delete(key: string): Promise<void> {
    const Key = this.key(key);
    try {
      const { sdk, client } = await this.s3();
      await this.retry(() => client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key })));
    } catch (err) {
      if (httpStatus(err) !== 404) throw this.wrap(err, 'delete', key);
    }
  }

  /**
   * DeleteObjects, quiet (the answer names only the keys it failed), `DELETE_MANY_MAX` keys a
   * request. A store that refuses the request itself as one it does not know or take (400,
   * 405, 501: no DeleteObjects, or one that wants a Content-MD5 the SDK no longer sends) gets
   * every key back for single deletes, this batch and every one after it; any other refusal
   * (403 …) gives back this batch's keys, whose single deletes then name what is wrong.
   */
  async deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<string[]> {
    const left: string[] = [];
    for (let i = 0; i < keys.length; i += DELETE_MANY_MAX) {
      const batch = keys.slice(i, i + DELETE_MANY_MAX);
      if (!this.batchDeletes) {
        left.push(...batch);
        continue;
      }
      let res;
      try {
        const { sdk, client } = await this.s3();
        const Objects = batch.map((key) => ({ Key: this.key(key) }));
        res = await this.retry(() => client.send(new sdk.DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects, Quiet: true } }), { abortSignal: signal }), signal);
      } catch (err) {
        const status = httpStatus(err);
        if (status === undefined || (status >= 500 && status !== 501)) throw this.wrap(err, 'delete', `${batch.length} objects (${batch[0]} …)`);
        if (status === 400 || status === 405 || status === 501) this.batchDeletes = false;
        left.push(...batch);
        continue;
      }
      for (const e of res.Errors ?? []) if (e.Key && e.Code !== 'NoSuchKey') left.push(e.Key.slice(this.prefix.length));
    }
    return left;
  }

  /** the bucket's versioning (GetBucketVersioning); undefined where the key may not ask, or the store does not answer it */
  async versioning(): Promise<'enabled' | 'suspended' | 'off' | undefined> {
    try {
      const { sdk, client } = await this.s3();
      const res = await this.retry(() => client.send(new sdk.GetBucketVersioningCommand({ Bucket: this.bucket })));
      return res.Status === 'Enabled' ? 'enabled' : res.Status === 'Suspended' ? 'suspended' : 'off';
    } catch {
      return undefined;
    }
  }

  /**
   * Multipart uploads under the prefix that were started more than `olderThanMs` ago and
   * never completed or aborted (a writer killed mid-upload): the store keeps their parts,
   * and bills them, until they are aborted. Their size is the sum of their parts.
   */
  async sweepTemporary(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
    const out = { files: 0, bytes: 0 };
    const cutoff = Date.now() - olderThanMs;
    try {
      const { sdk, client } = await this.s3();
      let keyMarker: string | undefined;
      let uploadMarker: string | undefined;
      do {
        const res = await this.retry(() =>
          client.send(new sdk.ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker: keyMarker, UploadIdMarker: uploadMarker })),
        );
        for (const u of res.Uploads ?? []) {
          if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated.getTime() > cutoff) continue;
          let partMarker: string | undefined;
          do {
            const parts = await this.retry(() =>
              client.send(new sdk.ListPartsCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId, PartNumberMarker: partMarker })),
            );
            for (const p of parts.Parts ?? []) out.bytes += p.Size ?? 0;
            partMarker = parts.IsTruncated ? parts.NextPartNumberMarker : undefined;
          } while (partMarker);
          if (!dryRun) await this.retry(() => client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })));
          out.files++;
        }
        keyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
        uploadMarker = res.IsTruncated ? res.NextUploadIdMarker : undefined;
      } while (keyMarker);
    } catch (err) {
      throw this.wrap(err, 'delete', 'unfinished multipart uploads');
    }
    return out;
  }

  destroy(): void {
    void this.connecting?.then(({ client }) => client.destroy()).catch(() => undefined);
    this.partClient?.destroy();
  }
}

export const s3Driver = {
  name: 's3',
  configSchema: s3Settings,
  open(settings) {
    return new S3Driver(settings as S3Settings);
  },
  checkSettings(settings, prefix) {
    return checkS3Settings(settings as S3Settings, prefix);
  },
} satisfies StorageDriverFactory<typeof s3Settings>;
