import type { FastifyPluginAsync } from 'fastify'
import type { FastifyErrorConstructor } from '@fastify/error'
import type { Database } from 'better-sqlite3'

declare module 'fastify' {
  interface FastifyInstance {
    backup: fastifySqliteBackup.BackupApi
  }
}

type FastifySqliteBackup = FastifyPluginAsync<fastifySqliteBackup.FastifySqliteBackupOptions>

declare namespace fastifySqliteBackup {
  /** A duration in milliseconds, or a string such as `'30s'`, `'10m'`, `'1h'`. */
  export type Duration = number | string

  export interface FastifySqliteBackupOptions {
    /** The database to back up: an open better-sqlite3 connection (never closed by the plugin) or a file path. */
    database: Database | string
    /** Directory that receives the backups; created with mode 0700 when missing. */
    destination: string
    /** Time between scheduled backups; `0` or `false` disables the schedule. Default `'10m'`. */
    interval?: Duration | false
    /** How many of the newest backups to keep. Default `24`. */
    keep?: number
    /** Take a backup as soon as the app is ready, without delaying `ready()`. Default `false`. */
    runOnStart?: boolean
    /** Longest time one backup may take before it is aborted. Default `'10m'`. */
    timeout?: Duration
    /** Longest time `fastify.close()` waits for a backup in flight before aborting it. Default `'10s'`. */
    closeTimeout?: Duration
  }

  export interface BackupNowOptions {
    /** Publish a new backup even when nothing changed since the last one. Default `false`. */
    force?: boolean
  }

  /** The record stored beside each backup (`<id>.json`). */
  export interface BackupMetadata {
    formatVersion: 1
    id: string
    /** When the snapshot was started (ISO 8601). */
    createdAt: string
    /** Absolute path of the database that was backed up. */
    source: string
    /** File name of the backup inside the destination. */
    file: string
    bytes: number
    sha256: string
    sqliteVersion: string
    pageSize: number
    pageCount: number
    /** Journal mode of the source database at the time of the snapshot. */
    journalMode: string
    durationMs: number
  }

  export interface BackupResult {
    /** `true` when nothing changed since the newest backup, which then already holds every commit. */
    skipped: boolean
    /** Id of the backup that holds the data: the new one, or the newest existing one when skipped. */
    id: string
    /** Absolute path of that backup file. */
    path: string
    bytes: number
    sha256: string
    startedAt: Date
    durationMs: number
    metadata: BackupMetadata
  }

  export interface BackupFailure {
    at: Date
    code: string
    message: string
  }

  export interface BackupStatus {
    running: boolean
    /** The newest backup known to this process (made by it, or found at start). */
    lastBackup: BackupMetadata | null
    /** When this process last completed a run, published or skipped. */
    lastSuccessAt: Date | null
    lastError: BackupFailure | null
    /** When the next scheduled backup starts; `null` when none is scheduled. */
    nextRunAt: Date | null
    /** Backups published by this process. */
    published: number
    /** Runs that found nothing to back up. */
    skipped: number
    /** Runs that failed. */
    failed: number
  }

  export interface BackupApi {
    /** Back up now; resolves once the backup is published (or skipped because nothing changed). */
    now (options?: BackupNowOptions): Promise<BackupResult>
    status (): BackupStatus
  }

  export const errors: {
    FST_SQLITE_BACKUP_INVALID_OPTION: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_INVALID_OPTION' }>
    FST_SQLITE_BACKUP_UNKNOWN_OPTION: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_UNKNOWN_OPTION' }>
    FST_SQLITE_BACKUP_INVALID_DATABASE: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_INVALID_DATABASE' }>
    FST_SQLITE_BACKUP_INVALID_DESTINATION: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_INVALID_DESTINATION' }>
    FST_SQLITE_BACKUP_ALREADY_REGISTERED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_ALREADY_REGISTERED' }>
    FST_SQLITE_BACKUP_NOT_READY: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_NOT_READY' }>
    FST_SQLITE_BACKUP_CLOSED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_CLOSED' }>
    FST_SQLITE_BACKUP_TIMEOUT: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_TIMEOUT' }>
    FST_SQLITE_BACKUP_SNAPSHOT_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_SNAPSHOT_FAILED' }>
    FST_SQLITE_BACKUP_CORRUPT_DATABASE: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_CORRUPT_DATABASE' }>
    FST_SQLITE_BACKUP_PUBLISH_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED' }>
  }

  export const fastifySqliteBackup: FastifySqliteBackup
  export { fastifySqliteBackup as default }
}

declare function fastifySqliteBackup (...params: Parameters<FastifySqliteBackup>): ReturnType<FastifySqliteBackup>
export = fastifySqliteBackup
