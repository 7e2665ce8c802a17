import { mkdir, readdir, readFile, rm, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { BackupMetadata } from '../types/index'
import { writeNewFile, renameDurably, syncDirectory } from './durable-fs'

const BACKUP_ID = /^(\d{8}T\d{9}Z-[0-9a-f]{8})\.sqlite$/
const METADATA_ID = /^(\d{8}T\d{9}Z-[0-9a-f]{8})\.json$/
const TEMP_OWNER = /^\.tmp-(\d+)-/

/**
 * A new backup id: a UTC timestamp that sorts in time order, then random bits so that two processes sharing a
 * destination never pick the same name. Ids are always generated here, never taken from input.
 */
export function newBackupId (date: Date): string {
  const stamp = date.toISOString().replace(/[-:.]/g, '')
  return `${stamp}-${randomBytes(4).toString('hex')}`
}

/** The local directory that holds the backups: `<id>.sqlite` beside its metadata `<id>.json`. */
export class LocalDestination {
  readonly directory: string

  constructor (directory: string) {
    this.directory = directory
  }

  backupPath (id: string): string {
    return join(this.directory, `${id}.sqlite`)
  }

  private metadataPath (id: string): string {
    return join(this.directory, `${id}.json`)
  }

  /** A fresh temp path in the destination, so that publishing is a rename within one filesystem. */
  tempPath (id: string, extension: string): string {
    return join(this.directory, `.tmp-${process.pid}-${id}.${extension}`)
  }

  async ensureDirectory (): Promise<void> {
    const created = await mkdir(this.directory, { recursive: true, mode: 0o700 })
    // mkdir's mode is filtered by the umask; the directory we create must be private whatever the umask.
    if (created !== undefined) await chmod(this.directory, 0o700)
  }

  /** Ids of the published backups, oldest first. A backup is published once its `.sqlite` file has its final name. */
  async listIds (): Promise<string[]> {
    const ids: string[] = []
    for (const name of await readdir(this.directory)) {
      const match = BACKUP_ID.exec(name)
      if (match) ids.push(match[1])
    }
    return ids.sort()
  }

  async readMetadata (id: string): Promise<BackupMetadata> {
    return JSON.parse(await readFile(this.metadataPath(id), 'utf8')) as BackupMetadata
  }

  /**
   * Publishes a finished, flushed temp file. The metadata gets its final name first and the backup file last, so
   * the backup's own rename is the commit point: a crash before it leaves only leftovers that the next start
   * removes, never a backup file without its record.
   */
  async publish (tempFile: string, metadata: BackupMetadata): Promise<string> {
    const tempMetadata = this.tempPath(metadata.id, 'json')
    try {
      await writeNewFile(tempMetadata, JSON.stringify(metadata, null, 2) + '\n')
      await renameDurably(tempMetadata, this.metadataPath(metadata.id), this.directory)
      await renameDurably(tempFile, this.backupPath(metadata.id), this.directory)
    } catch (err) {
      await rm(tempMetadata, { force: true })
      await rm(this.metadataPath(metadata.id), { force: true })
      throw err
    }
    return this.backupPath(metadata.id)
  }

  /** Deletes a backup: its file first, so that an interrupted delete leaves only an orphan record. */
  async remove (id: string): Promise<void> {
    await rm(this.backupPath(id), { force: true })
    await rm(this.metadataPath(id), { force: true })
  }

  /**
   * Removes what an interrupted run left behind: temp files of processes that are gone (or of an earlier
   * process that had our pid) and records whose backup file never got its final name.
   */
  async removeLeftovers (): Promise<string[]> {
    const names = await readdir(this.directory)
    const published = new Set(names.filter((name) => BACKUP_ID.test(name)))
    const leftovers = names.filter((name) => {
      const owner = TEMP_OWNER.exec(name)
      if (owner) return Number(owner[1]) === process.pid || !isProcessAlive(Number(owner[1]))
      const record = METADATA_ID.exec(name)
      return record !== null && !published.has(`${record[1]}.sqlite`)
    })
    for (const name of leftovers) await rm(join(this.directory, name), { force: true })
    if (leftovers.length > 0) await syncDirectory(this.directory)
    return leftovers
  }
}

function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
