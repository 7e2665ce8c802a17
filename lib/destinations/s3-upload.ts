// One object uploaded to S3 from a file: read → gzip → (age) → multipart upload, a few parts in memory at a time.
import { createReadStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { Transform, PassThrough, type Readable } from 'node:stream'
import { createGzip } from 'node:zlib'
import type { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { encryptStream } from './encryption'

export interface UploadRequest {
  client: S3Client
  bucket: string
  key: string
  file: string
  gzip: boolean
  /** Encrypts to this age recipient, after compression. */
  recipient: string | undefined
  partSize: number
  queueSize: number
  /** Longest time the upload may take before it is aborted. */
  uploadTimeout: number
  /** Aborts the upload (the app is closing). */
  signal: AbortSignal
}

/** An upload that failed once it had begun: `started` when S3 may hold parts of it, `timedOut` after `uploadTimeout`. */
export class UploadFailed extends Error {
  constructor (readonly started: boolean, readonly timedOut: boolean, options: { cause: unknown }) {
    super('the upload failed', options)
  }
}

/**
 * Uploads `file` under `key`; resolves with the bytes stored (after compression and encryption). Whatever happens,
 * the file is closed when this settles: a descriptor left open would hold a deleted snapshot's disk space.
 */
export async function uploadFile (request: UploadRequest): Promise<number> {
  const { gzip, recipient, signal } = request
  let storedBytes = 0
  const counter = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      storedBytes += chunk.length
      callback(null, chunk)
    }
  })
  // The encryption is set up before the file is opened: if it fails, there is no file to close.
  let sealing: { plain: PassThrough, sealed: Readable } | undefined
  if (recipient) {
    const plain = new PassThrough()
    try {
      sealing = { plain, sealed: await encryptStream(plain, recipient) }
    } catch (err) {
      plain.destroy()
      counter.destroy()
      throw err
    }
  }
  const source = createReadStream(request.file, { highWaterMark: 1 << 20 })
  const streams: Readable[] = [source, counter, ...(sealing ? [sealing.plain, sealing.sealed] : [])]
  let streaming: Promise<unknown> = Promise.resolve()
  let upload: Upload | undefined
  let timedOut = false
  let timer: NodeJS.Timeout | undefined
  const onAbort = (): void => { upload?.abort().catch(() => {}) }
  try {
    streaming = (sealing
      ? Promise.all([pipeline(gzip ? [source, createGzip(), sealing.plain] : [source, sealing.plain]), pipeline(sealing.sealed, counter)])
      : pipeline(gzip ? [source, createGzip(), counter] : [source, counter])
    ).catch(() => {})
    const contentType = recipient ? 'application/octet-stream' : gzip ? 'application/gzip' : 'application/vnd.sqlite3'
    const started = new Upload({
      client: request.client,
      params: { Bucket: request.bucket, Key: request.key, Body: counter, ContentType: contentType },
      queueSize: request.queueSize,
      partSize: request.partSize,
      leavePartsOnError: false
    })
    upload = started
    timer = setTimeout(() => { timedOut = true; started.abort().catch(() => {}) }, request.uploadTimeout)
    signal.addEventListener('abort', onAbort, { once: true })
    await started.done()
  } catch (err) {
    for (const stream of streams) stream.destroy()
    throw new UploadFailed(upload !== undefined, timedOut, { cause: err })
  } finally {
    clearTimeout(timer)
    signal.removeEventListener('abort', onAbort)
    await streaming
  }
  return storedBytes
}
