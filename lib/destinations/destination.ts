import type { BackupInfo, BackupMetadata } from '../../types/index'
import { timeOfId } from '../backup-id'
import { FST_SQLITE_BACKUP_NOT_FOUND } from '../errors'

/**
 * Where backups are kept. Every implementation stores a backup as one data object plus its record
 * (`<id>.json`), and a backup exists only once its record does (or, for a local directory, its final file name).
 */
export interface Destination {
  /** How it shows in logs, errors and status: a directory, or `s3://bucket/prefix`. Never holds a secret. */
  readonly name: string
  readonly type: 'local' | 's3'
  /** Creates or checks the destination; cheap, run once at registration. */
  prepare (): Promise<void>
  /** Every published backup, newest first, with its record. */
  list (): Promise<BackupInfo[]>
  /** One backup by id, validated first. */
  find (id: unknown): Promise<BackupInfo>
  /**
   * Stores a copy of a finished backup file, which stays where it is, and returns the record as stored (with this
   * destination's file name, compression and stored size). The record is written last: it is the commit point.
   */
  put (file: string, metadata: BackupMetadata, signal: AbortSignal): Promise<BackupMetadata>
  /** Replaces a backup's record (e.g. to add its drill result). */
  updateMetadata (metadata: BackupMetadata): Promise<void>
  /** Deletes a backup: its record first where the record is the commit point. */
  remove (id: string): Promise<void>
  /** The backup as a plain SQLite file readable in place, or undefined when it must be downloaded. */
  localFile (backup: BackupInfo): string | undefined
  /** Writes the backup, decompressed, into the existing empty file `to`. */
  download (backup: BackupInfo, to: string, signal: AbortSignal): Promise<void>
  /** Whether a failed put may pass if tried again (network errors, 5xx); never retried when missing. */
  isTransient?: (err: unknown) => boolean
  /** Removes what interrupted runs left behind; returns their names. */
  removeLeftovers (): Promise<string[]>
}

/** The record as stored in a destination that keeps the file as is. */
export function uncompressedRecord (metadata: BackupMetadata): BackupMetadata {
  return { ...metadata, file: `${metadata.id}.sqlite`, compression: 'none', storedBytes: metadata.bytes }
}

/** A listed backup: its record (null when missing or unreadable), its time, and whether its drill passed. */
export function backupInfo (id: string, path: string, metadata: BackupMetadata | null): BackupInfo {
  return {
    id,
    path,
    createdAt: metadata ? new Date(metadata.createdAt) : timeOfId(id),
    metadata,
    good: metadata?.drill?.ok !== false
  }
}

/** The newest backup in `destination` taken at or before `at`. */
export async function findBackupAt (destination: Destination, at: Date): Promise<BackupInfo> {
  const match = (await destination.list()).find((backup) => backup.createdAt.getTime() <= at.getTime())
  if (!match) throw new FST_SQLITE_BACKUP_NOT_FOUND(`taken at or before ${at.toISOString()}`, destination.name)
  return match
}
