import { statSync, accessSync, constants as fsConstants } from 'node:fs'
import { resolve, dirname, join, relative, isAbsolute } from 'node:path'
import { tmpdir } from 'node:os'
import Database from 'better-sqlite3'
import type { FastifySqliteBackupOptions, DrillFunction } from '../types/index'
import { toPolicy, describeInvalidKeep, type RetentionPolicy } from './retention'
import { resolveS3, checkDistinct } from './destinations/s3-options'
import type { DestinationSettings } from './destinations/create'
import { durationOption } from './duration'
import {
  FST_SQLITE_BACKUP_INVALID_OPTION,
  FST_SQLITE_BACKUP_UNKNOWN_OPTION,
  FST_SQLITE_BACKUP_INVALID_DATABASE,
  FST_SQLITE_BACKUP_INVALID_DESTINATION
} from './errors'

export const DEFAULT_INTERVAL = 10 * 60_000
export const DEFAULT_KEEP = 24
export const DEFAULT_TIMEOUT = 10 * 60_000
export const DEFAULT_CLOSE_TIMEOUT = 10_000
export const DEFAULT_SYNC_INTERVAL = 1000
// Past this size the plugin checkpoints the WAL itself, so that SQLite starts it over (continuous backup only). About
// SQLite's own automatic checkpoint (1000 pages of 4 KiB): a WAL kept longer makes every commit of every writer try a
// checkpoint of its own.
export const DEFAULT_WAL_SIZE_LIMIT = 4 * 1024 * 1024

export interface ResolvedOptions {
  /** Absolute path of the database file; the plugin opens its own connections to it. */
  databasePath: string
  /** Where backups go; the first one is read by list(), verify() and restore() unless told otherwise. */
  destinations: DestinationSettings[]
  /**
   * The local directory where snapshots are taken before they are published: the first local destination, or else
   * the `staging` directory. Also holds the leases that processes sharing the destinations take turns with.
   */
  stagingDirectory: string
  /** 0 means no schedule. */
  interval: number
  keep: RetentionPolicy
  runOnStart: boolean
  timeout: number
  closeTimeout: number
  /** false: no drill. */
  drill: false | DrillOptions
  restoreIfMissing: boolean
  onBackup: FastifySqliteBackupOptions['onBackup']
  onError: FastifySqliteBackupOptions['onError']
  /** false: snapshots only. */
  continuous: false | ContinuousSettings
  /** Bytes per second that backups write and delete on local disks; undefined: no limit. */
  maxRate: number | undefined
}

/** Continuous backup: every committed change shipped within `syncInterval`. */
export interface ContinuousSettings {
  syncInterval: number
  walSizeLimit: number
}

/** A restore drill: integrity_check always, plus a SQL check or a function check when given. */
export interface DrillOptions {
  sql?: string
  fn?: DrillFunction
}

const KNOWN_OPTIONS = [
  'database', 'destination', 'interval', 'keep', 'runOnStart', 'timeout', 'closeTimeout',
  'drill', 'restoreIfMissing', 'onBackup', 'onError', 'staging', 'continuous', 'maxRate'
] as const
// Fastify reads these from the same object as the plugin's own options (fastify.register(plugin, { logLevel })).
const FASTIFY_REGISTER_OPTIONS: readonly string[] = ['prefix', 'logLevel', 'logSerializers']

/**
 * Validates the user's options and returns a resolved copy. Reads the filesystem (stat) but changes nothing,
 * so a rejected registration leaves no trace.
 */
export function resolveOptions (options: unknown): ResolvedOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('options', 'an object with at least "database" and "destination"')
  }
  for (const key of Object.keys(options)) {
    if (!(KNOWN_OPTIONS as readonly string[]).includes(key) && !FASTIFY_REGISTER_OPTIONS.includes(key)) {
      const near = closestName(key, KNOWN_OPTIONS)
      throw new FST_SQLITE_BACKUP_UNKNOWN_OPTION(key, near ? `; did you mean "${near}"?` : `; known options: ${KNOWN_OPTIONS.join(', ')}`)
    }
  }
  const opts = options as Partial<FastifySqliteBackupOptions>

  const restoreIfMissing = boolean('restoreIfMissing', opts.restoreIfMissing, false)
  if (restoreIfMissing && typeof opts.database !== 'string') {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('restoreIfMissing', 'a "database" given as a path: an open connection cannot be missing')
  }
  const databasePath = resolveDatabase(opts.database, restoreIfMissing)
  const destinations = resolveDestinations(opts.destination, databasePath)
  const firstLocal = destinations.find((destination) => destination.type === 'local')
  if (opts.staging !== undefined && firstLocal) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('staging', 'nothing when a destination is a directory: snapshots are staged in the first one')
  }
  const staging = firstLocal?.directory ?? resolveStaging(opts.staging, databasePath)

  return {
    databasePath,
    stagingDirectory: staging,
    destinations,
    interval: opts.interval === false ? 0 : durationOption('interval', opts.interval, DEFAULT_INTERVAL, { allowZero: true }),
    keep: keepPolicy(opts.keep),
    runOnStart: boolean('runOnStart', opts.runOnStart, false),
    timeout: durationOption('timeout', opts.timeout, DEFAULT_TIMEOUT),
    closeTimeout: durationOption('closeTimeout', opts.closeTimeout, DEFAULT_CLOSE_TIMEOUT, { allowZero: true }),
    drill: drillOptions(opts.drill),
    restoreIfMissing,
    onBackup: optionalFunction('onBackup', opts.onBackup),
    onError: optionalFunction('onError', opts.onError),
    continuous: continuousOption(opts.continuous),
    maxRate: rateOption('maxRate', opts.maxRate)
  }
}

const MIN_RATE = 1024 * 1024
const RATE_UNITS: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }
const RATE = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)\s*(?:\/\s*s)?\s*$/i

/** A rate in bytes per second: a number, or a string such as '50MB', '64 MiB/s'. */
function rateOption (name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  const match = typeof value === 'string' ? RATE.exec(value) : null
  const rate = typeof value === 'number' ? value : match ? Number(match[1]) * RATE_UNITS[match[2].toLowerCase()] : NaN
  if (!Number.isFinite(rate) || rate < MIN_RATE) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, 'bytes per second, at least 1 MiB/s: a number, or a string such as \'50MB\' or \'64MiB/s\'')
  }
  return Math.floor(rate)
}

function continuousOption (value: unknown): false | ContinuousSettings {
  if (value === undefined || value === false) return false
  if (value === true) return { syncInterval: DEFAULT_SYNC_INTERVAL, walSizeLimit: DEFAULT_WAL_SIZE_LIMIT }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('continuous', 'true, false or an object such as { syncInterval: \'1s\' }')
  }
  for (const key of Object.keys(value)) {
    if (key !== 'syncInterval' && key !== 'walSizeLimit') throw new FST_SQLITE_BACKUP_UNKNOWN_OPTION(`continuous.${key}`, '; known: syncInterval, walSizeLimit')
  }
  const { syncInterval, walSizeLimit } = value as { syncInterval?: unknown, walSizeLimit?: unknown }
  if (walSizeLimit !== undefined && (!Number.isSafeInteger(walSizeLimit) || (walSizeLimit as number) < 1024 * 1024)) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('continuous.walSizeLimit', 'a whole number of bytes, at least 1048576 (1 MiB)')
  }
  return {
    syncInterval: durationOption('continuous.syncInterval', syncInterval, DEFAULT_SYNC_INTERVAL),
    walSizeLimit: (walSizeLimit as number | undefined) ?? DEFAULT_WAL_SIZE_LIMIT
  }
}

function resolveDatabase (database: unknown, mayBeMissing: boolean): string {
  if (typeof database === 'string') {
    const path = checkedPath('database', database)
    let stats
    try {
      stats = statSync(path)
    } catch {
      if (mayBeMissing) return path
      throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`the file "${path}" does not exist; create the database before registering the plugin, or set restoreIfMissing`)
    }
    if (!stats.isFile()) throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`"${path}" is not a file`)
    return path
  }
  if (looksLikeDatabaseHandle(database)) {
    if (!(database instanceof Database)) {
      throw new FST_SQLITE_BACKUP_INVALID_DATABASE('the connection comes from another copy of better-sqlite3 than the one this plugin loads. ' +
        'Two copies of SQLite in one process keep separate track of their file locks, so the plugin\'s connections could roll back ' +
        'the app\'s live journal or drop its locks (sqlite.org/howtocorrupt.html, 2.2.1). Install a single better-sqlite3 ' +
        '(it is a peer dependency of the plugin: check with npm ls better-sqlite3), or pass the database\'s path')
    }
    if (!database.open) throw new FST_SQLITE_BACKUP_INVALID_DATABASE('the connection is closed; pass an open connection')
    if (database.memory || database.name === '' || database.name === ':memory:') {
      throw new FST_SQLITE_BACKUP_INVALID_DATABASE('it is an in-memory or temporary database, which no other connection can read; open a database file instead')
    }
    return resolve(database.name)
  }
  throw new FST_SQLITE_BACKUP_INVALID_OPTION('database', 'a better-sqlite3 Database or the path of a database file')
}

// Shaped like a connection; whether it is one of ours is checked next, with a message for each case.
function looksLikeDatabaseHandle (value: unknown): value is Database.Database {
  return value !== null && typeof value === 'object' &&
    typeof (value as Database.Database).prepare === 'function' &&
    typeof (value as Database.Database).name === 'string' &&
    typeof (value as Database.Database).open === 'boolean'
}

function resolveDestinations (value: unknown, databasePath: string): DestinationSettings[] {
  const list = Array.isArray(value) ? value : [value]
  if (list.length === 0) throw new FST_SQLITE_BACKUP_INVALID_OPTION('destination', 'a directory, an S3 destination { type: \'s3\', bucket, region }, or a non-empty array of these')
  const destinations = list.map((item: unknown, index): DestinationSettings => {
    const where = Array.isArray(value) ? `destination[${index}]` : 'destination'
    if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
      const type = (item as { type?: unknown }).type
      if (type !== 's3') throw new FST_SQLITE_BACKUP_INVALID_OPTION(`${where}.type`, '\'s3\' (a local destination is given as its directory path)')
      return resolveS3(item as Record<string, unknown>, where)
    }
    return { type: 'local', directory: resolveDirectory(item, databasePath, where) }
  })
  checkDistinct(destinations.map((destination) => destination.type === 'local'
    ? destination.directory
    : `s3://${destination.bucket}/${destination.prefix} at ${destination.endpoint ?? destination.region}`))
  return destinations
}

/** The default staging directory is per user, so that no other user can plant files in it. */
function resolveStaging (value: unknown, databasePath: string): string {
  if (value === undefined) return join(tmpdir(), `fastify-sqlite-backup-${process.getuid?.() ?? 'user'}`)
  return resolveDirectory(value, databasePath, 'staging')
}

/** A local directory for backups or staging: an existing writable directory, or one that can be created. */
function resolveDirectory (value: unknown, databasePath: string, name: string): string {
  const path = checkedPath(name, value)
  if (path === databasePath) {
    throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, 'it is the database file itself; choose a directory')
  }
  let stats
  try {
    stats = statSync(path)
  } catch {
    // Missing: it will be created, so its nearest existing ancestor must be a writable directory.
    return checkCreatable(path)
  }
  if (!stats.isDirectory()) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, 'it is not a directory')
  if (!isWritableDirectory(path)) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, 'the process may not write to it')
  return path
}

function checkCreatable (path: string): string {
  let ancestor = dirname(path)
  for (;;) {
    try {
      const stats = statSync(ancestor)
      if (!stats.isDirectory()) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, `"${ancestor}" is not a directory`)
      if (!isWritableDirectory(ancestor)) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, `it is missing and the process may not create it in "${ancestor}"`)
      return path
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      ancestor = dirname(ancestor)
    }
  }
}

function isWritableDirectory (path: string): boolean {
  try {
    accessSync(path, fsConstants.W_OK | fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

function checkedPath (name: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '' || value.includes('\0')) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, 'a non-empty path without NUL bytes')
  }
  const path = resolve(value)
  // A relative path that climbs out of the working directory is more likely a mistake (or injected) than meant.
  if (!isAbsolute(value) && relative(process.cwd(), path).startsWith('..')) {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, 'a relative path inside the working directory, or an absolute path')
  }
  return path
}

function keepPolicy (value: unknown): RetentionPolicy {
  if (value === undefined) return toPolicy(DEFAULT_KEEP)
  const problem = describeInvalidKeep(value)
  if (problem) throw new FST_SQLITE_BACKUP_INVALID_OPTION('keep', problem)
  return toPolicy(value as number | RetentionPolicy)
}

function drillOptions (value: unknown): false | DrillOptions {
  if (value === undefined || value === false) return false
  if (value === true) return {}
  if (typeof value === 'string' && value.trim() !== '') return { sql: value }
  if (typeof value === 'function') return { fn: value as DrillFunction }
  throw new FST_SQLITE_BACKUP_INVALID_OPTION('drill', 'true, a SQL query whose first column must be truthy, or a function (db) => boolean')
}

function optionalFunction<T> (name: string, value: T): T {
  if (value !== undefined && typeof value !== 'function') throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, 'a function')
  return value
}

function boolean (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new FST_SQLITE_BACKUP_INVALID_OPTION(name, 'true or false')
  return value
}

/** The known name closest to a misspelled one, if it is close enough to be a likely typo. */
export function closestName (name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}
