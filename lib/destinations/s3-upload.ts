// One object uploaded to S3 from a file: read → gzip → (age) → multipart upload, a few parts in memory at a time.
import { createReadStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { Transform, PassThrough, type Readable } from 'node:stream'
import { createGzip } from 'node:zlib'
import type { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { encryptStream } from './encryption'
import { s3Client, type ClientSettings } from './s3-bucket'
import { sendableError, type SentError } from './s3-errors'
import { TaskAborted } from '../worker/protocol'

/** One upload, as the upload thread is sent it. */
export interface UploadJob {
  client: ClientSettings
  bucket: string
  key: string
  file: string
  gzip: boolean
  /** Encrypts to this age recipient, after compression. */
  recipient: string | undefined
  partSize: number
  queueSize: number
}

/** What the upload thread answers: the bytes stored, or how the upload failed (errors do not cross threads whole). */
export type UploadOutcome = { storedBytes: number } | { failed: { started: boolean, cause: SentError } }

/** An upload that failed once it had begun: `started` when S3 may hold parts of it. */
class UploadFailed extends Error {
  constructor (readonly started: boolean, options: { cause: unknown }) {
    super('the upload failed', options)
  }
}

// One client per thread and set of client settings (a destination has a thread of its own): its sockets are reused.
const clients = new Map<string, S3Client>()

/**
 * The upload thread's task. Everything an upload costs in CPU happens here, not on the app's event loop: reading,
 * gzip, age's ChaCha20 (in JavaScript), and the SDK's part buffers, checksums, signatures and socket writes, which
 * took the loop for up to 90 ms at a time when they ran on it.
 */
export async function uploadTask (job: UploadJob, _shouldStop: unknown, signal: AbortSignal): Promise<UploadOutcome> {
  const settings = JSON.stringify(job.client)
  let client = clients.get(settings)
  if (client === undefined) clients.set(settings, client = s3Client(job.client))
  try {
    return { storedBytes: await uploadFile(client, job, signal) }
  } catch (err) {
    // Stopped (timed out, or the app is closing): the thread that asked says why.
    if (signal.aborted) throw new TaskAborted()
    if (!(err instanceof UploadFailed)) throw err
    return { failed: { started: err.started, cause: sendableError(err.cause) } }
  }
}

/**
 * Uploads `file` under `key`; resolves with the bytes stored (after compression and encryption). Whatever happens,
 * the file is closed when this settles: a descriptor left open would hold a deleted snapshot's disk space.
 */
async function uploadFile (client: S3Client, request: UploadJob, signal: AbortSignal): Promise<number> {
  const { gzip, recipient } = request
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
  const onAbort = (): void => { upload?.abort().catch(() => {}) }
  try {
    streaming = (sealing
      ? Promise.all([pipeline(gzip ? [source, createGzip(), sealing.plain] : [source, sealing.plain]), pipeline(sealing.sealed, counter)])
      : pipeline(gzip ? [source, createGzip(), counter] : [source, counter])
    ).catch(() => {})
    const contentType = recipient ? 'application/octet-stream' : gzip ? 'application/gzip' : 'application/vnd.sqlite3'
    const started = new Upload({
      client,
      params: { Bucket: request.bucket, Key: request.key, Body: counter, ContentType: contentType },
      queueSize: request.queueSize,
      partSize: request.partSize,
      leavePartsOnError: false
    })
    upload = started
    signal.addEventListener('abort', onAbort, { once: true })
    if (signal.aborted) onAbort()
    await started.done()
  } catch (err) {
    for (const stream of streams) stream.destroy()
    throw new UploadFailed(upload !== undefined, { cause: err })
  } finally {
    signal.removeEventListener('abort', onAbort)
    await streaming
  }
  return storedBytes
}
