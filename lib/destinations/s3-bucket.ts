import { createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import type { Readable, Transform } from 'node:stream'
import { createGunzip } from 'node:zlib'
import {
  S3Client, HeadBucketCommand, ListObjectsV2Command, GetObjectCommand, PutObjectCommand, DeleteObjectCommand,
  ListMultipartUploadsCommand, AbortMultipartUploadCommand, type MultipartUpload
} from '@aws-sdk/client-s3'
import { decryptStream } from './encryption'
import { describeS3Error } from './s3-errors'
import { s3Url, type S3Settings } from './s3-options'

/** What a client needs of the settings: a plain object, which the upload thread is sent to make its own client. */
export type ClientSettings = Pick<S3Settings, 'region' | 'endpoint' | 'forcePathStyle' | 'credentials' | 'requestTimeout'>

export function s3Client ({ region, endpoint, forcePathStyle, credentials, requestTimeout }: ClientSettings): S3Client {
  return new S3Client({
    region,
    endpoint,
    forcePathStyle,
    // Undefined: the SDK's standard chain (environment, shared files, instance or container role).
    credentials,
    // Without throwOnRequestTimeout the SDK only logs a warning when requestTimeout passes, and a server that takes
    // the request and never answers holds it (and every backup queued behind it) for good. The socket timeout
    // bounds a body that stops flowing.
    requestHandler: { connectionTimeout: 10_000, requestTimeout, throwOnRequestTimeout: true, socketTimeout: requestTimeout }
  })
}

/** How a stored object becomes a local file: decrypted, decompressed, and bounded in size, as it says. */
export interface Decoding {
  encrypted: boolean
  gzip: boolean
  /** Stops the download when the decoded bytes pass a size (see untrusted-objects.ts). */
  bound?: Transform
  /** Names the object in a decryption error. */
  label: string
}

/**
 * One bucket and key prefix, as the destination talks to it: names are relative to the prefix, every call's SDK
 * error becomes a coded error that says what to do (s3-errors.ts), and listings walk every page.
 */
export class S3Bucket {
  readonly client: S3Client
  /** `s3://bucket/prefix`, as logs and errors show it. */
  readonly name: string

  /** `listPageSize` sets MaxUploads of ListMultipartUploads (unset: the server's default, 1000). */
  constructor (readonly settings: S3Settings, private readonly listPageSize?: number) {
    this.name = s3Url(settings)
    this.client = s3Client(settings)
  }

  /** Closes the client's sockets: a request still waiting on a server that never answers fails at once. */
  destroy (): void {
    this.client.destroy()
  }

  async check (signal: AbortSignal): Promise<void> {
    await this.call('check the bucket', () => this.client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }), { abortSignal: signal }))
  }

  /** Visits every object under `prefix` (relative), one ListObjectsV2 per 1000 keys; `/` folds sub-"directories". */
  async listObjects (action: string, prefix: string, visit: (name: string, modified: number) => void, delimiter?: string): Promise<void> {
    let token: string | undefined
    do {
      const page = await this.call(action, () => this.client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.settings.prefix + prefix, Delimiter: delimiter, ContinuationToken: token })))
      for (const object of page.Contents ?? []) visit(object.Key?.slice(this.settings.prefix.length) ?? '', object.LastModified?.getTime() ?? 0)
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  async get (action: string, name: string, signal?: AbortSignal): Promise<{ body: Readable, length: number | undefined }> {
    const response = await this.call(action, () => this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.settings.prefix + name }), { abortSignal: signal }))
    return { body: response.Body as Readable, length: response.ContentLength }
  }

  /** Downloads `name` into the existing file `to`, decoded as `decoding` says. */
  async download (action: string, name: string, to: string, decoding: Decoding, signal: AbortSignal): Promise<void> {
    const { body: received } = await this.get(action, name, signal)
    let body = received
    try {
      if (decoding.encrypted) body = await decryptStream(received, decoding.label, this.settings.encryption?.identity)
    } catch (err) {
      received.destroy()
      throw err
    }
    const stages = [body, ...(decoding.gzip ? [createGunzip()] : []), ...(decoding.bound ? [decoding.bound] : []), createWriteStream(to, { flags: 'r+' })]
    await pipeline(stages, { signal })
  }

  async putJson (action: string, name: string, text: string): Promise<void> {
    await this.call(action, () => this.client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key: this.settings.prefix + name, Body: text, ContentType: 'application/json' })))
  }

  async delete (name: string): Promise<void> {
    await this.call('delete', () => this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.settings.prefix + name })))
  }

  /** Every unfinished multipart upload whose key (a full key) starts with `prefix`: one request per page. */
  async listUploads (prefix: string): Promise<MultipartUpload[]> {
    const uploads: MultipartUpload[] = []
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    for (;;) {
      const page = await this.call('list unfinished uploads', () => this.client.send(new ListMultipartUploadsCommand({
        Bucket: this.settings.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: this.listPageSize
      })))
      uploads.push(...(page.Uploads ?? []))
      // A server that says "more" without moving its markers on would be listed forever: take what it gave.
      if (page.IsTruncated !== true || page.NextKeyMarker === undefined ||
        (page.NextKeyMarker === keyMarker && page.NextUploadIdMarker === uploadIdMarker)) return uploads
      keyMarker = page.NextKeyMarker
      uploadIdMarker = page.NextUploadIdMarker
    }
  }

  async abortUpload (key: string, uploadId: string): Promise<void> {
    await this.call('abort an unfinished upload', () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: key, UploadId: uploadId })))
  }

  async call<T> (action: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request()
    } catch (err) {
      throw this.describe(action, err)
    }
  }

  /** SDK errors as errors that say what to do; the original stays as `cause`, the status code decides retries. */
  describe (action: string, err: unknown): Error {
    return describeS3Error(action, err, this.name, this.settings.endpoint ?? `region ${this.settings.region}`)
  }
}
