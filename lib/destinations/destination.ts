import type { BackupInfo, BackupMetadata } from '../../types/index'
import { timeOfId } from '../backup-id'
import type { SegmentRef } from '../continuous/chain'

/**
 * Where backups are kept: one implementation per kind of storage (a local directory, an S3 bucket). Every
 * implementation stores a backup as one data object plus its record (`<id>.json`), and a backup exists only once
 * its record does (or, for a local directory, its final file name).
 */
export interface Destination {
  /** How it shows in logs, errors and status: a directory, or `s3://bucket/prefix`. Never holds a secret. */
  readonly name: string
  readonly type: 'local' | 's3'
  /** Creates or checks the destination; cheap, run once at registration, given up when `signal` aborts. */
  prepare (signal: AbortSignal): Promise<void>
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
  /**
   * The backup as a plain SQLite file on this machine: the file itself where the destination keeps it as one, or
   * a download (decompressed, decrypted) written to `tempPath`, which `release()` removes.
   */
  localCopy (backup: BackupInfo, tempPath: string, signal: AbortSignal): Promise<LocalCopy>
  /** Whether a failed put may pass if tried again (network errors, 5xx). */
  isTransient (err: unknown): boolean
  /** Removes what interrupted runs left behind; returns their names. */
  removeLeftovers (): Promise<string[]>
  /**
   * Stores a finished segment of continuous backup (see continuous/chain.ts) under `name`, compressed and encrypted
   * as the destination stores backups, all or nothing: it is listed only once complete.
   */
  putSegment (file: string, name: string, signal: AbortSignal): Promise<void>
  /** Every stored segment: one listing, the only request that reads what segments exist. */
  listSegments (): Promise<SegmentRef[]>
  /** A segment as a plain file on this machine, like localCopy. */
  segmentCopy (segment: SegmentRef, tempPath: string, signal: AbortSignal): Promise<LocalCopy>
  removeSegment (segment: SegmentRef): Promise<void>
  /** Removes the temp files of segments whose storing was interrupted; call it holding the ship lease. */
  removeSegmentLeftovers (): Promise<string[]>
  /** Releases its connections and threads (at close): requests still in flight fail. */
  close (): Promise<void>
}

export interface LocalCopy {
  path: string
  release (): Promise<void>
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
