import type { BackupInfo, BackupMetadata } from '../../types/index'
import { checkBackupId, idNamePattern } from '../backup-id'
import { createEmptyFile, removeFile } from '../durable-fs'
import {
  FST_SQLITE_BACKUP_NOT_FOUND, FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT, FST_SQLITE_BACKUP_VERIFY_FAILED
} from '../errors'
import { checkedRecipientOf } from './encryption'
import type { UploadJob, UploadOutcome } from './s3-upload'
import { TaskThread } from '../worker/task-thread'
import { isTransientS3Error, statusOf, receivedError } from './s3-errors'
import { readAtMost, parseRecord, atMost, MAX_RECORD_BYTES } from './untrusted-objects'
import type { S3Settings } from './s3-options'
import { S3Bucket, type Decoding } from './s3-bucket'
import { backupInfo, type Destination, type LocalCopy } from './destination'
import { parseSegmentName, type SegmentRef } from '../continuous/chain'

const RECORD = idNamePattern(String.raw`\.json`)
const DATA = idNamePattern(String.raw`\.sqlite(\.gz)?(\.age)?`)
// Records read at once by list(): each is a small GET.
const RECORD_READS = 8

/**
 * A bucket and key prefix on AWS S3 or an S3-compatible server. A backup is `<prefix><id>.sqlite.gz` (or `.sqlite`
 * uncompressed) and its record `<prefix><id>.json`, written after the data: the record is the commit point, so a
 * backup without one does not exist and is removed as a leftover.
 */
export class S3BucketDestination implements Destination {
  readonly type = 's3'
  readonly name: string
  private readonly bucket: S3Bucket
  /** Data keys whose failed multipart upload could not be aborted yet (the server was unreachable). */
  private readonly pendingAborts = new Set<string>()
  /**
   * Records read or written by this process. A record changes only when its writer adds the drill result, so a
   * listing costs one GET per record the first time only, then ListObjectsV2 alone.
   */
  private readonly records = new Map<string, BackupMetadata>()
  /** The recipient, once age has parsed the keys. */
  private checkedRecipient: string | undefined
  /** Where uploads run, side by side (a segment is not queued behind a backup), away from the app's event loop. */
  private readonly uploads = new TaskThread({ concurrent: true })

  /**
   * `listPageSize` sets MaxUploads of ListMultipartUploads (the server's default, 1000, when unset); the tests
   * use it to get several pages from a few uploads.
   */
  constructor (private readonly settings: S3Settings, internal: { listPageSize?: number } = {}) {
    this.bucket = new S3Bucket(settings, internal.listPageSize)
    this.name = this.bucket.name
  }

  /**
   * The keys, parsed by age, then one HeadBucket: a malformed key, a wrong bucket or credentials show at
   * startup, not at the first backup. Given up when `signal` aborts, so that a server that takes packets and never
   * answers cannot hold the app's boot.
   */
  async prepare (signal: AbortSignal): Promise<void> {
    await this.recipient()
    await this.bucket.check(signal)
  }

  /** The age recipient to encrypt to, once age has accepted the keys (at registration). */
  private async recipient (): Promise<string | undefined> {
    if (!this.settings.encryption) return undefined
    this.checkedRecipient ??= await checkedRecipientOf(this.settings.encryption)
    return this.checkedRecipient
  }

  /** Closes the client's sockets (a request still waiting on a server that never answers fails at once) and the upload thread. */
  async close (): Promise<void> {
    this.bucket.destroy()
    await this.uploads.close()
  }

  async list (): Promise<BackupInfo[]> {
    const { records } = await this.listKeys()
    for (const id of this.records.keys()) if (!records.has(id)) this.records.delete(id)
    const ids = [...records.keys()].sort().reverse()
    const infos: BackupInfo[] = new Array(ids.length)
    let next = 0
    const reader = async (): Promise<void> => {
      while (next < ids.length) {
        const index = next++
        infos[index] = this.info(ids[index], await this.readRecord(ids[index]).catch(() => null))
      }
    }
    await Promise.all(Array.from({ length: Math.min(RECORD_READS, ids.length) }, reader))
    return infos
  }

  async find (id: unknown): Promise<BackupInfo> {
    const checked = checkBackupId(id)
    try {
      return this.info(checked, await this.readRecord(checked))
    } catch (err) {
      if (statusOf(err) === 404) throw new FST_SQLITE_BACKUP_NOT_FOUND(checked, this.name)
      throw err
    }
  }

  /** Uploads the file (compressed, maybe encrypted), then writes the record: the commit point. */
  async put (file: string, metadata: BackupMetadata, signal: AbortSignal): Promise<BackupMetadata> {
    await this.abortPendingUploads()
    const { name, storedBytes, encrypted } = await this.upload(file, `${metadata.id}.sqlite`, 'upload the backup', signal)
    const record: BackupMetadata = { ...metadata, file: name, compression: this.settings.compression, storedBytes }
    if (encrypted) record.encryption = 'age'
    await this.writeRecord(record)
    return record
  }

  /**
   * Uploads `file` as `name`, compressed and encrypted as configured (which add `.gz` and `.age` to the name);
   * returns the stored name and size. S3 lists an object only once it is complete.
   */
  private async upload (file: string, name: string, action: string, signal: AbortSignal): Promise<{ name: string, storedBytes: number, encrypted: boolean }> {
    const gzip = this.settings.compression === 'gzip'
    const recipient = await this.recipient()
    const stored = `${name}${gzip ? '.gz' : ''}${recipient ? '.age' : ''}`
    const key = this.settings.prefix + stored
    const { bucket, partSize, queueSize, uploadTimeout, region, endpoint, forcePathStyle, credentials, requestTimeout } = this.settings
    const job: UploadJob = { client: { region, endpoint, forcePathStyle, credentials, requestTimeout }, bucket, key, file, gzip, recipient, partSize, queueSize }
    let outcome: UploadOutcome
    try {
      outcome = await this.uploads.run<UploadOutcome>('upload', job, { timeout: uploadTimeout, signal })
    } catch (err) {
      // Stopped (timed out, or the app is closing) or its thread lost: parts may be left on the server.
      await this.forgetUpload(key, signal)
      if ((err as { code?: string }).code === 'FST_SQLITE_BACKUP_TIMEOUT') throw new FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT(this.name, uploadTimeout)
      throw err
    }
    if ('failed' in outcome) {
      if (outcome.failed.started) await this.forgetUpload(key, signal)
      throw this.bucket.describe(action, receivedError(outcome.failed.cause))
    }
    return { name: stored, storedBytes: outcome.storedBytes, encrypted: recipient !== undefined }
  }

  /**
   * No parts of a failed multipart upload may stay behind (they are billed and invisible): aborted now, or before
   * the next upload. Not while the app closes: close() must not wait on a server; the next start aborts the upload
   * once it is stale.
   */
  private async forgetUpload (key: string, signal: AbortSignal): Promise<void> {
    this.pendingAborts.add(key)
    if (!signal.aborted) await this.abortPendingUploads().catch(() => {})
  }

  async updateMetadata (metadata: BackupMetadata): Promise<void> {
    await this.writeRecord(metadata)
  }

  /** The record first: an interrupted delete leaves only an unlisted data object, removed as a leftover. */
  async remove (id: string): Promise<void> {
    const file = this.dataName(id, this.records.get(id) ?? null)
    await this.bucket.delete(`${id}.json`)
    this.records.delete(id)
    // The data object's name is in the record, which list() has just read; without it, every possible name.
    const names = file ? [file] : ['', '.gz', '.age', '.gz.age'].map((suffix) => `${id}.sqlite${suffix}`)
    for (const name of names) await this.bucket.delete(name)
  }

  /** One PutObject (a multipart upload when large) of the segment. */
  async putSegment (file: string, name: string, signal: AbortSignal): Promise<void> {
    await this.upload(file, name, 'upload a segment', signal)
  }

  /** One ListObjectsV2 per 1000 segments. */
  async listSegments (): Promise<SegmentRef[]> {
    const segments: SegmentRef[] = []
    await this.bucket.listObjects('list the segments', 'wal/', (name) => {
      const segment = parseSegmentName(name)
      if (segment) segments.push(segment)
    })
    return segments
  }

  /** Downloads a segment, decrypted and decompressed; its own checksum is checked by whoever reads it. */
  async segmentCopy (segment: SegmentRef, tempPath: string, signal: AbortSignal): Promise<LocalCopy> {
    return await this.downloadCopy('download a segment', segment.name, tempPath, { encrypted: segment.encrypted, gzip: segment.compression === 'gzip', label: segment.name }, signal)
  }

  async removeSegment (segment: SegmentRef): Promise<void> {
    await this.bucket.delete(segment.name)
  }

  /** A segment's PutObject is all or nothing; an interrupted multipart upload is aborted by removeLeftovers(). */
  async removeSegmentLeftovers (): Promise<string[]> {
    return []
  }

  /**
   * Downloads the backup into `tempPath`, decrypted and decompressed; the copy is removed when released. Objects
   * offsite are not trusted: the download stops with FST_SQLITE_BACKUP_VERIFY_FAILED (and leaves no file) as soon
   * as it is larger than the record says, and a backup without a (sound) record is not downloaded at all.
   */
  async localCopy (backup: BackupInfo, tempPath: string, signal: AbortSignal): Promise<LocalCopy> {
    if (!Number.isSafeInteger(backup.metadata?.bytes)) {
      throw new FST_SQLITE_BACKUP_VERIFY_FAILED(backup.id, 'its record is missing or unreadable, so its download could be neither checked nor bounded')
    }
    const name = this.dataName(backup.id, backup.metadata) ?? `${backup.id}.sqlite`
    const decoding = { encrypted: name.endsWith('.age'), gzip: name.includes('.sqlite.gz'), bound: atMost(backup.metadata!.bytes, backup.id), label: backup.id }
    return await this.downloadCopy('download the backup', name, tempPath, decoding, signal)
  }

  /** The object `name`, decoded into the new file `tempPath`, which release() removes; no file is left on failure. */
  private async downloadCopy (action: string, name: string, tempPath: string, decoding: Decoding, signal: AbortSignal): Promise<LocalCopy> {
    await createEmptyFile(tempPath)
    const release = (): Promise<void> => removeFile(tempPath)
    try {
      await this.bucket.download(action, name, tempPath, decoding, signal)
    } catch (err) {
      await release()
      throw err
    }
    return { path: tempPath, release }
  }

  /** The data object named by a record, if it has the only form a record of this backup can name. */
  private dataName (id: string, metadata: BackupMetadata | null): string | undefined {
    const file = metadata?.file
    return file !== undefined && DATA.exec(file)?.[1] === id ? file : undefined
  }

  /**
   * Aborts multipart uploads older than the upload timeout (their process died or gave up) and deletes data
   * objects that never got their record, once as old.
   */
  async removeLeftovers (): Promise<string[]> {
    const removed: string[] = []
    const cutoff = Date.now() - this.settings.uploadTimeout
    for (const upload of await this.bucket.listUploads(this.settings.prefix)) {
      if (!upload.Key || !upload.UploadId || (upload.Initiated && upload.Initiated.getTime() > cutoff)) continue
      await this.bucket.abortUpload(upload.Key, upload.UploadId)
      removed.push(upload.Key)
    }
    const { records, data } = await this.listKeys()
    for (const [name, { id, modified }] of data) {
      if (records.has(id) || modified > cutoff) continue
      await this.bucket.delete(name)
      removed.push(this.settings.prefix + name)
    }
    return removed
  }

  /** Retried: network errors, timeouts, throttling and 5xx. */
  isTransient (err: unknown): boolean {
    return isTransientS3Error(err)
  }

  /** Ids with a record, and data objects by name; one ListObjectsV2 per 1000 keys. */
  private async listKeys (): Promise<{ records: Map<string, number>, data: Map<string, { id: string, modified: number }> }> {
    const records = new Map<string, number>()
    const data = new Map<string, { id: string, modified: number }>()
    // The delimiter folds the segments of continuous backup (wal/...) into one entry: a listing of backups never walks them.
    await this.bucket.listObjects('list the backups', '', (name, modified) => {
      const record = RECORD.exec(name)
      if (record) records.set(record[1], modified)
      const stored = DATA.exec(name)
      if (stored) data.set(name, { id: stored[1], modified })
    }, '/')
    return { records, data }
  }

  private info (id: string, metadata: BackupMetadata | null): BackupInfo {
    return backupInfo(id, `${this.name}${metadata?.file ?? `${id}.sqlite`}`, metadata)
  }

  /** A backup's record; null when what is stored under its name is not one (too large, not JSON, not this backup's). */
  private async readRecord (id: string): Promise<BackupMetadata | null> {
    const known = this.records.get(id)
    if (known) return known
    const { body, length } = await this.bucket.get('read a record', `${id}.json`)
    const text = await this.bucket.call('read a record', () => readAtMost(body, MAX_RECORD_BYTES, length))
    const metadata = text === undefined ? null : parseRecord(text, id)
    if (metadata) this.records.set(id, metadata)
    return metadata
  }

  private async writeRecord (metadata: BackupMetadata): Promise<void> {
    await this.bucket.putJson('write the record', `${metadata.id}.json`, JSON.stringify(metadata, null, 2) + '\n')
    this.records.set(metadata.id, metadata)
  }

  private async abortPendingUploads (): Promise<void> {
    for (const key of this.pendingAborts) {
      for (const upload of await this.bucket.listUploads(key)) {
        if (upload.Key !== key || !upload.UploadId) continue
        await this.bucket.abortUpload(key, upload.UploadId)
      }
      this.pendingAborts.delete(key)
    }
  }
}
