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
    /**
     * Where the backups go: a directory (created with mode 0700 when missing), an S3 destination, or an array of
     * these, each of which receives every backup. `list()`, `verify()` and `restore()` read the first one unless told
     * otherwise.
     */
    destination: string | S3Destination | Array<string | S3Destination>
    /**
     * With no directory among the destinations: the private directory (mode 0700) where each snapshot is taken
     * before it is uploaded. Default: `fastify-sqlite-backup-<uid>` in the OS temp directory.
     */
    staging?: string
    /** Time between scheduled backups; `0` or `false` disables the schedule. Default `'10m'`. */
    interval?: Duration | false
    /** How many of the newest backups to keep, or a policy such as `{ last: 24, daily: 7, weekly: 4 }`. Default `24`. */
    keep?: number | RetentionPolicy
    /** Take a backup as soon as the app is ready, without delaying `ready()`. Default `false`. */
    runOnStart?: boolean
    /** Longest time one backup may take before it is aborted. Default `'10m'`. */
    timeout?: Duration
    /** Longest time `fastify.close()` waits for a backup in flight before aborting it. Default `'10s'`. */
    closeTimeout?: Duration
    /**
     * Restore drill after each backup: `true` runs `PRAGMA integrity_check` on it; a string is also a query whose
     * first column must be truthy; a function gets the backup opened read-only and must return true. Default `false`.
     */
    drill?: boolean | string | DrillFunction
    /** When `database` is a path to a missing file, restore the newest good backup there at registration. Default `false`. */
    restoreIfMissing?: boolean
    /** Called after each published backup. */
    onBackup?: (result: BackupResult) => void
    /** Called after each failed run (scheduled or not). */
    onError?: (error: Error) => void
    /**
     * Continuous backup (WAL databases): every committed transaction is shipped to every destination within
     * `syncInterval` (default `'1s'`), and `restore()` can rebuild the database as of any moment since the oldest
     * kept snapshot. Snapshots, on `interval`, become the bases changes are replayed from. Default `false`.
     */
    continuous?: boolean | ContinuousOptions
    /**
     * The most bytes per second a backup writes to, or deletes from, a local disk: a number, or a string such as
     * `'50MB'` or `'64MiB/s'` (at least 1 MiB/s). Lower means smoother latency for the app's own writes and longer
     * backups. Default: no limit (writes are still flushed every 8 MiB).
     */
    maxRate?: number | string
  }

  export interface ContinuousOptions {
    /** Longest time between a commit and its shipping to every destination. Default `'1s'`. */
    syncInterval?: Duration
    /** WAL size past which the plugin checkpoints it itself, so that SQLite starts it over. Default 4 MiB. */
    walSizeLimit?: number
  }

  /** A bucket (and key prefix) on AWS S3 or an S3-compatible server. */
  export interface S3Destination {
    type: 's3'
    bucket: string
    /** Key prefix, e.g. `'backups/app/'`; a missing trailing `/` is added. Default `''`. */
    prefix?: string
    /** Required; S3-compatible servers accept any, e.g. `'us-east-1'`. */
    region: string
    /** For S3-compatible servers, e.g. `'https://minio.example.com:9000'`. */
    endpoint?: string
    /** `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`; most self-hosted servers need it. */
    forcePathStyle?: boolean
    /** Default: the SDK's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared files, instance roles). */
    credentials?: { accessKeyId: string, secretAccessKey: string, sessionToken?: string }
    /** Default `'gzip'`. */
    compression?: 'gzip' | 'none'
    /** Bytes per multipart part (at least 5 MiB). Memory use is about partSize × (queueSize + 1). Default 8 MiB. */
    partSize?: number
    /** Parts uploaded at once. Default `2`. */
    queueSize?: number
    /** Longest time one upload may take before it is aborted (and retried). Default `'1h'`. */
    uploadTimeout?: Duration
    /**
     * Longest wait for the server's answer to one request, and longest a download may stall; past it the request
     * fails (and the backup is retried). Default `'2m'`.
     */
    requestTimeout?: Duration
    /** Tries per backup, with exponential backoff and jitter between them. Default `4`. */
    attempts?: number
    /**
     * Client-side encryption in the age format (https://age-encryption.org), after compression. The recipient
     * (`age1...`, public) is enough to back up; the identity (`AGE-SECRET-KEY-1...`, secret) is needed to verify and
     * restore, and gives the recipient when that is omitted. Default: no encryption.
     */
    encryption?: { recipient: string, identity?: string } | { recipient?: string, identity: string }
  }

  export type DrillFunction = (backup: Database) => boolean | Promise<boolean>

  /**
   * Which backups to keep, with the keep-last/hourly/daily/weekly/monthly semantics of restic and borg: a backup
   * kept by any rule stays; the newest backup always stays.
   */
  export interface RetentionPolicy {
    last?: number
    hourly?: number
    daily?: number
    weekly?: number
    monthly?: number
    /** Buckets in UTC instead of the server's local time zone. Default `false`. */
    utc?: boolean
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
    /** File name of the backup inside the destination (`<id>.sqlite`, or `<id>.sqlite.gz` when compressed). */
    file: string
    /** Size of the database (uncompressed). */
    bytes: number
    /** sha256 of the database (uncompressed), whatever the destination stores. */
    sha256: string
    /** How the destination stores it; missing in records written before compression existed (`'none'`). */
    compression?: 'gzip' | 'none'
    /** Size of the stored object, after compression (and encryption). */
    storedBytes?: number
    /** Set when the stored object is encrypted (age format, after compression). */
    encryption?: 'age'
    sqliteVersion: string
    pageSize: number
    pageCount: number
    /** Journal mode of the source database at the time of the snapshot. */
    journalMode: string
    durationMs: number
    /** Result of the restore drill, when drills are on. */
    drill?: DrillResult
    /**
     * With continuous backup: the backup is a base of chain `chain`. It holds every commit of the chain up to number
     * `from` (read by `fromAt`), maybe some after, none after `to` (read by `pinnedAt`): a restore replays the
     * chain's commits after `from` onto it.
     */
    continuous?: {
      chain: string
      from: number
      to: number
      fromAt: number
      pinnedAt: number
      /** The drill's check that the previous base of the chain, with the changes stored since, rebuilds this one. */
      proof?: { ok: boolean, at: string, from: string, commit?: number, problems: string[] }
    }
  }

  export interface DrillResult {
    ok: boolean
    /** ISO 8601 */
    at: string
    problems: string[]
  }

  /** A backup in the destination, as `list()` returns it. */
  export interface BackupInfo {
    id: string
    path: string
    createdAt: Date
    /** `null` when the record is missing or unreadable. */
    metadata: BackupMetadata | null
    /** `false` when its restore drill failed: retention does not count it as a kept backup. */
    good: boolean
  }

  export interface VerifyResult {
    ok: boolean
    id: string
    path: string
    problems: string[]
    checkedAt: Date
    durationMs: number
  }

  export interface RestoreOptions extends ReadOptions {
    /** Where to write the restored database. */
    to: string
    /** Replace an existing file there. Default `false`. */
    force?: boolean
  }

  export interface RestoreResult {
    /** The snapshot restored (the base, when changes were replayed onto it). */
    id: string
    /** Absolute path of the restored database. */
    path: string
    bytes: number
    sha256: string
    durationMs: number
    /** When changes were replayed: the chain, the number of the last commit applied and when it was read from the WAL. */
    replayed?: { chain: string, commit: number, at: Date | null, commits: number }
  }

  export interface BackupResult {
    /** `true` when nothing changed since the newest backup, which then already holds every commit. */
    skipped: boolean
    /** Id of the backup that holds the data: the new one, or the newest existing one when skipped. */
    id: string
    /**
     * Where that backup is: the absolute path of its file in the first local destination; with S3 destinations
     * only, the `s3://bucket/prefix/<file>` URL of the stored object (compressed, maybe encrypted), not a path.
     */
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
    /**
     * When the next scheduled backup starts; `null` when none is scheduled, or when another process runs the
     * schedule (see `scheduledBy`).
     */
    nextRunAt: Date | null
    /**
     * Who runs the schedule of this database: `'this-process'`; `'another-process'`, a process backing up the same
     * database to the same destinations, which holds the schedule lease (this one then backs up only when `now()` is
     * called, and takes the schedule over when that process stops); `'none'` without a schedule.
     */
    scheduledBy: 'this-process' | 'another-process' | 'none'
    /** Backups published by this process. */
    published: number
    /** Runs that found nothing to back up. */
    skipped: number
    /** Runs that failed. */
    failed: number
    /** The last `verify()` in this process. */
    lastVerify: VerifyResult | null
    /** The last restore drill in this process. */
    lastDrill: (DrillResult & { id: string }) | null
    /** Backups in the first destination after the last retention pass (or at start). */
    kept: { count: number, bytes: number }
    /** Each destination, in the order of the `destination` option. */
    destinations: DestinationStatus[]
  }

  export interface DestinationStatus {
    /** The directory, or `s3://bucket/prefix`. */
    name: string
    type: 'local' | 's3'
    /** When this process last published a backup there. */
    lastSuccessAt: Date | null
    /** The last failure there, after retries; `null` once a backup is published there again. */
    lastError: BackupFailure | null
    /** The newest backup known to be there. */
    lastBackupId: string | null
    /** Backups there after the last retention pass (or at start). */
    kept: { count: number, bytes: number }
    /** With continuous backup, what of the changes is stored there. */
    continuous?: ContinuousStatus
  }

  export interface ContinuousStatus {
    /** The chain being shipped and the number of its last commit stored there. */
    position: { chain: string, commit: number } | null
    /** Age in ms of the oldest commit read from the WAL but not yet stored there (0 when all is stored). */
    lagMs: number
    /** The WAL's size in bytes at the last shipping pass. */
    walBytes: number
    /** The oldest and newest moments a restore from there can return, or null when it holds no base yet. */
    window: RestorableWindow | null
    /** The last failure to store changes there; `null` once a pass succeeds. */
    lastError: BackupFailure | null
  }

  export interface RestorableWindow {
    from: Date
    to: Date
  }

  export interface SyncResult {
    /** The chain and the number of its last commit now stored at every destination (`null`: nothing to ship yet). */
    position: { chain: string, commit: number } | null
    durationMs: number
  }

  /** Which destination `list()`, `verify()` and `restore()` read. */
  export interface ReadOptions {
    /** Index in the `destination` option. Default `0`, the first. */
    destination?: number
  }

  export interface BackupApi {
    /** Back up now; resolves once the backup is published (or skipped because nothing changed). */
    now (options?: BackupNowOptions): Promise<BackupResult>
    status (): BackupStatus
    /** The backups in the (first) destination, newest first. Reads their records only. */
    list (options?: ReadOptions): Promise<BackupInfo[]>
    /**
     * Checks a backup (the newest by default): size and sha256 against its record, and `PRAGMA integrity_check`.
     * An offsite backup is downloaded (and decompressed) into the staging directory first.
     */
    verify (id?: string, options?: ReadOptions): Promise<VerifyResult>
    /**
     * Writes a backup to a new path, verified: by id, that snapshot alone; `{ at }`, the database as it was after
     * the last commit read at or before `at` (with continuous backup; else the newest snapshot taken by then);
     * `'latest'`, the newest state the destination holds.
     */
    restore (backup: string | { at: Date | string } | 'latest', options: RestoreOptions): Promise<RestoreResult>
    /**
     * With continuous backup: resolves once every transaction committed before the call is stored at every
     * destination (fsync'ed locally, acknowledged by S3). Concurrent calls share one shipping pass.
     */
    sync (): Promise<SyncResult>
    /** The oldest and newest moments `restore({ at })` can return from a destination (the first by default). */
    window (options?: ReadOptions): Promise<RestorableWindow | null>
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
    FST_SQLITE_BACKUP_INVALID_ID: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_INVALID_ID' }>
    FST_SQLITE_BACKUP_NOT_FOUND: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_NOT_FOUND' }>
    FST_SQLITE_BACKUP_VERIFY_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_VERIFY_FAILED' }>
    FST_SQLITE_BACKUP_RESTORE_REFUSED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_RESTORE_REFUSED' }>
    FST_SQLITE_BACKUP_RESTORE_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_RESTORE_FAILED' }>
    FST_SQLITE_BACKUP_S3_ACCESS_DENIED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_S3_ACCESS_DENIED' }>
    FST_SQLITE_BACKUP_S3_NO_BUCKET: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_S3_NO_BUCKET' }>
    FST_SQLITE_BACKUP_DECRYPT_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_DECRYPT_FAILED' }>
    FST_SQLITE_BACKUP_S3_REQUEST_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_S3_REQUEST_FAILED' }>
    FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT' }>
    FST_SQLITE_BACKUP_MISSING_DEPENDENCY: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_MISSING_DEPENDENCY' }>
    FST_SQLITE_BACKUP_INTERRUPTED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_INTERRUPTED' }>
    FST_SQLITE_BACKUP_SYNC_FAILED: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_SYNC_FAILED' }>
    FST_SQLITE_BACKUP_CHAIN_BROKEN: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_CHAIN_BROKEN' }>
    FST_SQLITE_BACKUP_NOT_CONTINUOUS: FastifyErrorConstructor<{ code: 'FST_SQLITE_BACKUP_NOT_CONTINUOUS' }>
  }

  export const fastifySqliteBackup: FastifySqliteBackup
  export { fastifySqliteBackup as default }
}

declare function fastifySqliteBackup (...params: Parameters<FastifySqliteBackup>): ReturnType<FastifySqliteBackup>
export = fastifySqliteBackup
