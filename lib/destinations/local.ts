import { mkdir, readdir, readFile, rename, rmdir, chmod } from 'node:fs/promises'
import { join, dirname } from 'node:path'
import { createReadStream, createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { createGzip, createGunzip } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import type { BackupMetadata, BackupInfo } from '../../types/index'
import { writeNewFile, renameDurably, syncDirectory, removeFile, flushFile } from '../durable-fs'
import { checkBackupId, idNamePattern } from '../backup-id'
import { uncompressedRecord } from '../record'
import { isProcessAlive } from '../process-alive'
import { FST_SQLITE_BACKUP_NOT_FOUND } from '../errors'
import { copyGradually, removeGradually, type DiskPace } from '../io-pace'
import { backupInfo, type Destination, type LocalCopy } from './destination'
import { parseSegmentName, type SegmentRef } from '../continuous/chain'

const BACKUP_FILE = idNamePattern(String.raw`\.sqlite`)
const RECORD_FILE = idNamePattern(String.raw`\.json`)
// zlib's default: a second of changes compresses in a few milliseconds, in the thread pool.
const SEGMENT_GZIP_LEVEL = 6
// Temp files of earlier versions, named after their process id.
const LEGACY_TEMP = /^\.tmp-(\d+)-/

/** The local directory that holds the backups: `<id>.sqlite` beside its metadata `<id>.json`. */
export class LocalDestination implements Destination {
  readonly directory: string
  readonly type = 'local'

  /**
   * `scope` names the runs whose temp files this writes (see leases.ts): they are made only under that scope's run
   * lease, so whoever holds it may remove them. `disk` paces the big writes and deletions (the `maxRate` option).
   */
  constructor (directory: string, private readonly scope = 'run', private readonly disk: DiskPace = {}) {
    this.directory = directory
  }

  get name (): string {
    return this.directory
  }

  async prepare (): Promise<void> {
    await this.ensureDirectory()
  }

  /** Backups here are plain SQLite files, read in place. */
  async localCopy (backup: BackupInfo): Promise<LocalCopy> {
    return { path: backup.path, release: async () => {} }
  }

  async close (): Promise<void> {}

  /** Nothing is retried: a local failure (a full disk, permissions) does not pass by itself within seconds. */
  isTransient (): boolean {
    return false
  }

  /** A copy of a backup published elsewhere: copied into a temp file here, then published as usual. */
  async put (file: string, metadata: BackupMetadata): Promise<BackupMetadata> {
    await this.ensureDirectory()
    const temp = this.tempPath(metadata.id, 'sqlite')
    const record = uncompressedRecord(metadata)
    try {
      await copyGradually(file, temp, this.disk)
      await this.publish(temp, record)
    } finally {
      await removeGradually(temp, this.disk)
    }
    return record
  }

  backupPath (id: string): string {
    return join(this.directory, `${id}.sqlite`)
  }

  private metadataPath (id: string): string {
    return join(this.directory, `${id}.json`)
  }

  /** A fresh temp path in the destination, so that publishing is a rename within one filesystem. */
  tempPath (id: string, extension: string): string {
    // The process id is for people reading the directory; ownership is the scope's, under its run lease.
    return join(this.directory, `.tmp-${this.scope}-${process.pid}-${id}.${extension}`)
  }

  async ensureDirectory (): Promise<void> {
    const created = await mkdir(this.directory, { recursive: true, mode: 0o700 })
    // mkdir's mode is filtered by the umask; the directory we create must be private whatever the umask.
    if (created !== undefined) await chmod(this.directory, 0o700)
  }

  /** Ids of the published backups, oldest first. A backup is published once its `.sqlite` file has its final name. */
  private async listIds (): Promise<string[]> {
    const ids: string[] = []
    for (const name of await readdir(this.directory)) {
      const match = BACKUP_FILE.exec(name)
      if (match) ids.push(match[1])
    }
    return ids.sort()
  }

  private async readMetadata (id: string): Promise<BackupMetadata> {
    return JSON.parse(await readFile(this.metadataPath(id), 'utf8')) as BackupMetadata
  }

  /** Every published backup, newest first, with its record. Reads the small records only, never the backups. */
  async list (): Promise<BackupInfo[]> {
    const ids = (await this.listIds()).reverse()
    return await Promise.all(ids.map((id) => this.info(id)))
  }

  /** One backup by id; the id is validated first, so it can never name a path outside the destination. */
  async find (id: unknown): Promise<BackupInfo> {
    const checked = checkBackupId(id)
    if (!(await this.listIds()).includes(checked)) throw new FST_SQLITE_BACKUP_NOT_FOUND(checked, this.directory)
    return await this.info(checked)
  }

  private async info (id: string): Promise<BackupInfo> {
    return backupInfo(id, this.backupPath(id), await this.readMetadata(id).catch(() => null))
  }

  /** Replaces a backup's record atomically (e.g. to add its drill result). */
  async updateMetadata (metadata: BackupMetadata): Promise<void> {
    const temp = this.tempPath(`${metadata.id}-${randomBytes(4).toString('hex')}`, 'json')
    try {
      await writeNewFile(temp, JSON.stringify(metadata, null, 2) + '\n')
      await renameDurably(temp, this.metadataPath(metadata.id), this.directory)
    } finally {
      await removeFile(temp)
    }
  }

  /**
   * Publishes a finished, flushed temp file. The metadata gets its final name first and the backup file last, so
   * the backup's own rename is the commit point: a crash before it leaves only leftovers that the next start
   * removes, never a backup file without its record. A failure after it undoes nothing: the backup exists.
   */
  async publish (tempFile: string, metadata: BackupMetadata): Promise<string> {
    const tempMetadata = this.tempPath(metadata.id, 'json')
    const backupPath = this.backupPath(metadata.id)
    try {
      await writeNewFile(tempMetadata, JSON.stringify(metadata, null, 2) + '\n')
      await renameDurably(tempMetadata, this.metadataPath(metadata.id), this.directory)
      await rename(tempFile, backupPath)
    } catch (err) {
      await removeFile(tempMetadata)
      await removeFile(this.metadataPath(metadata.id))
      throw err
    }
    try {
      await syncDirectory(this.directory)
    } catch (err) {
      // Deleting the record now would leave a published backup without one. Both stay; the failure is reported.
      throw Object.assign(new Error(`backup ${metadata.id} is in place with its record, but flushing the directory failed, so it may not survive a power loss: ${(err as Error).message}`, { cause: err }), { code: (err as NodeJS.ErrnoException).code })
    }
    return backupPath
  }

  /**
   * Writes the segment gzipped (successive versions of a page compress well) into a temp file beside its final
   * name, flushes it, then renames it: complete or absent.
   */
  async putSegment (file: string, name: string): Promise<void> {
    const path = join(this.directory, `${name}.gz`)
    const directory = dirname(path)
    await this.ensureDirectory()
    const created = await mkdir(directory, { recursive: true, mode: 0o700 })
    // A new chain's directory must itself survive a power loss, in its parent.
    if (created !== undefined) await syncDirectory(dirname(directory)).then(() => syncDirectory(this.directory))
    const temp = join(directory, `.tmp-${this.scope}-${process.pid}-${randomBytes(4).toString('hex')}.seg`)
    try {
      await pipeline(createReadStream(file), createGzip({ level: SEGMENT_GZIP_LEVEL }), createWriteStream(temp, { flags: 'wx', mode: 0o600 }))
      await flushFile(temp)
      await renameDurably(temp, path, directory)
    } finally {
      await removeFile(temp)
    }
  }

  async listSegments (): Promise<SegmentRef[]> {
    const root = join(this.directory, 'wal')
    const chains = await readdir(root).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return []
      throw err
    })
    const segments: SegmentRef[] = []
    for (const chain of chains) {
      const names = await readdir(join(root, chain)).catch(() => [])
      for (const name of names) {
        const segment = parseSegmentName(`wal/${chain}/${name}`)
        if (segment) segments.push(segment)
      }
    }
    return segments
  }

  /** A segment, decompressed into `tempPath` (one stored plain is read in place). */
  async segmentCopy (segment: SegmentRef, tempPath: string, signal: AbortSignal): Promise<LocalCopy> {
    const stored = join(this.directory, segment.name)
    if (segment.compression === 'none') return { path: stored, release: async () => {} }
    const release = (): Promise<void> => removeFile(tempPath)
    try {
      await pipeline(createReadStream(stored), createGunzip(), createWriteStream(tempPath, { flags: 'wx', mode: 0o600 }), { signal })
    } catch (err) {
      await release()
      throw err
    }
    return { path: tempPath, release }
  }

  async removeSegment (segment: SegmentRef): Promise<void> {
    const path = join(this.directory, segment.name)
    await removeFile(path)
    // The chain's directory goes with its last segment.
    await rmdir(dirname(path)).catch(() => {})
  }

  async removeSegmentLeftovers (): Promise<string[]> {
    const root = join(this.directory, 'wal')
    const removed: string[] = []
    for (const chain of await readdir(root).catch(() => [] as string[])) {
      for (const name of await readdir(join(root, chain)).catch(() => [] as string[])) {
        if (!name.startsWith(`.tmp-${this.scope}-`)) continue
        await removeFile(join(root, chain, name))
        removed.push(`wal/${chain}/${name}`)
      }
    }
    return removed
  }

  /**
   * Deletes a backup. Its file is first renamed to a temp name, so that it stops being a backup at once (a crash
   * leaves only leftovers, removed by the next run, never a half-deleted backup); then its record goes; then the
   * file, gradually (see removeGradually).
   */
  async remove (id: string): Promise<void> {
    const doomed = this.tempPath(id, 'deleting')
    try {
      await rename(this.backupPath(id), doomed)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    await removeFile(this.metadataPath(id))
    await removeGradually(doomed, this.disk)
  }

  /**
   * Removes what an interrupted run left behind: this scope's temp files and records whose backup file never got
   * its final name. Call it holding the scope's run lease: then no run that could still finish them is in progress,
   * in this process or any other (a process id would not tell: containers sharing a volume reuse them).
   */
  async removeLeftovers (): Promise<string[]> {
    const names = await readdir(this.directory)
    const published = new Set(names.filter((name) => BACKUP_FILE.test(name)))
    const ours = `.tmp-${this.scope}-`
    const leftovers = names.filter((name) => {
      if (name.startsWith(ours)) return true
      const legacy = LEGACY_TEMP.exec(name)
      if (legacy) return Number(legacy[1]) === process.pid || !isProcessAlive(Number(legacy[1]))
      const record = RECORD_FILE.exec(name)
      return record !== null && !published.has(`${record[1]}.sqlite`)
    })
    for (const name of leftovers) await removeGradually(join(this.directory, name), this.disk)
    if (leftovers.length > 0) await syncDirectory(this.directory)
    return leftovers
  }
}
