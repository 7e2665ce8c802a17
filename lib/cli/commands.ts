// The commands of the command-line tool. Each returns an Outcome; main.ts alone writes output and picks the exit code.
import { readFileSync } from 'node:fs'
import { stat, mkdtemp, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { tmpdir } from 'node:os'
import type { BackupInfo, RestoreResult, VerifyResult, S3Destination } from '../../types/index'
import type { Destination } from '../destinations/destination'
import { LocalDestination } from '../destinations/local'
import { createDestination } from '../destinations/create'
import { resolveS3 } from '../destinations/s3-options'
import { newestBackup, withLocalCopy } from '../destinations/read'
import { planRestore, restorableWindow } from '../continuous/restore-plan'
import { restorePlan } from '../continuous/point-in-time'
import { checksumOf } from '../record'
import { verifyBackupFile } from '../verify'
import { restoreBackup } from '../restore'
import { DEFAULT_TIMEOUT } from '../options'
import { KEEP_EVERYTHING } from '../retention'
import { fastifySqliteBackup } from '../plugin'
import { missingPackage } from '../optional-dependency'
import {
  FST_SQLITE_BACKUP_NOT_FOUND, FST_SQLITE_BACKUP_INVALID_DESTINATION, FST_SQLITE_BACKUP_INTERRUPTED,
  FST_SQLITE_BACKUP_MISSING_DEPENDENCY
} from '../errors'
import { formatList, formatWindow, formatVerify, formatRestore, formatBackup } from './format'
import type { CommandName } from './usage'

/** What a command produced: `value` for --json, `text` for humans, and `failure` (one line) when it exits 1. */
export interface Outcome {
  value: unknown
  text: string
  failure?: string
}

export type Values = Record<string, string | boolean | undefined>

export interface Invocation {
  positionals: string[]
  values: Values
}

export interface CommandSpec {
  options: Record<string, { type: 'string' | 'boolean', short?: string }>
  required: string[]
  optional: string[]
  run: (invocation: Invocation) => Promise<Outcome>
}

/** Bad command line: exit 2, with the usage hint. */
export class UsageError extends Error {
  constructor (message: string, readonly command?: CommandName) {
    super(message)
  }
}

// Where an s3:// destination is: the credentials come from the environment (AWS_ACCESS_KEY_ID, ...), never flags.
const S3_OPTIONS = {
  endpoint: { type: 'string' },
  region: { type: 'string' },
  'path-style': { type: 'boolean' },
  'identity-file': { type: 'string' }
} as const

export const COMMANDS: Record<CommandName, CommandSpec> = {
  list: { options: { ...S3_OPTIONS }, required: ['dir'], optional: [], run: listCommand },
  verify: { options: { all: { type: 'boolean' }, ...S3_OPTIONS }, required: ['dir'], optional: ['id'], run: verifyCommand },
  restore: {
    options: { to: { type: 'string' }, at: { type: 'string' }, force: { type: 'boolean' }, ...S3_OPTIONS },
    required: ['dir'],
    optional: ['id'],
    run: restoreCommand
  },
  backup: {
    options: { keep: { type: 'string' }, force: { type: 'boolean' }, recipient: { type: 'string' }, ...S3_OPTIONS },
    required: ['database', 'dir'],
    optional: [],
    run: backupCommand
  }
}

async function listCommand ({ positionals: [dir], values }: Invocation): Promise<Outcome> {
  const destination = await openDestination(dir, values)
  const backups = await destination.list()
  const window = await restorableWindow(destination)
  return { value: backups, text: formatList(destination.name, backups) + formatWindow(window) }
}

async function verifyCommand ({ positionals: [dir, id], values }: Invocation): Promise<Outcome> {
  if (id !== undefined && values.all === true) throw new UsageError('give a backup id or --all, not both', 'verify')
  const destination = await openDestination(dir, values)
  const backups = values.all === true ? await destination.list() : [id === undefined ? await newestBackup(destination) : await destination.find(id)]
  // An empty destination is a failure: a cron job checking backups must hear that there are none.
  if (backups.length === 0) throw new FST_SQLITE_BACKUP_NOT_FOUND('yet', destination.name)

  const results: VerifyResult[] = []
  for (const backup of backups) results.push(await verifyOne(destination, backup))
  const failed = results.filter((result) => !result.ok)
  let failure: string | undefined
  if (failed.length > 0) {
    failure = values.all === true
      ? `${failed.length} of ${results.length} backups failed verification: ${failed.map((result) => result.id).join(', ')}`
      : `backup ${failed[0].id} failed verification: ${failed[0].problems.join('; ')}`
  }
  return { value: values.all === true ? results : results[0], text: formatVerify(results), failure }
}

async function restoreCommand ({ positionals: [dir, id], values }: Invocation): Promise<Outcome> {
  const to = typeof values.to === 'string' ? values.to : ''
  if (to === '') throw new UsageError('missing --to <path>: where to write the restored database', 'restore')
  if (id !== undefined && values.at !== undefined) throw new UsageError('give a backup id or --at, not both', 'restore')
  const at = values.at === undefined ? undefined : parseTime(String(values.at))
  const destination = await openDestination(dir, values)
  const started = Date.now()
  const target = resolve(to)
  const force = values.force === true
  if (id !== undefined) {
    // find() validates the id, so that no input can name a file outside the destination.
    const backup = await destination.find(id)
    const { sha256, bytes } = await untilInterrupted((signal) => withTempCopy(destination, backup, signal, (backupPath) => restoreBackup(
      { id: backup.id, backupPath, expected: checksumOf(backup.metadata), to: target, force },
      { timeout: DEFAULT_TIMEOUT, signal }
    )))
    const result: RestoreResult = { id: backup.id, path: target, bytes, sha256, durationMs: Date.now() - started }
    return { value: result, text: formatRestore(result, backup) }
  }
  // No id: the newest state stored, or the state as of --at (a snapshot, and the changes stored after it).
  const plan = await planRestore(destination, at)
  const restored = await untilInterrupted(async (signal) => {
    const dir = await mkdtemp(join(tmpdir(), 'fastify-sqlite-backup-'))
    try {
      return await restorePlan(destination, plan, { to: target, force, downloadPath: (name) => join(dir, name) }, { timeout: DEFAULT_TIMEOUT, signal })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
  const replayed = restored.replayed && { ...restored.replayed, at: restored.replayed.at === null ? null : new Date(restored.replayed.at) }
  const result: RestoreResult = { id: plan.base.id, path: target, bytes: restored.bytes, sha256: restored.sha256, durationMs: Date.now() - started, ...(replayed && { replayed }) }
  return { value: result, text: formatRestore(result, plan.base) }
}

async function backupCommand ({ positionals: [database, dir], values }: Invocation): Promise<Outcome> {
  // Without --keep nothing is deleted: cron may point the tool at the app's own destination, whose backups the app's
  // retention policy (daily, weekly, monthly...) looks after.
  const keep = values.keep === undefined ? KEEP_EVERYTHING : parseKeep(String(values.keep))
  const destination = isS3Url(dir) ? s3Descriptor(dir, values) : localDirectory(dir, values)
  const Fastify = await loadFastify()
  // The plugin itself, so that a backup from cron is made, named, checked and published exactly as the app's are.
  const app = Fastify({ logger: false })
  try {
    await app.register(fastifySqliteBackup, { database, destination, interval: false, keep })
    await app.ready()
    const result = await app.backup.now({ force: values.force === true })
    return { value: result, text: formatBackup(result) }
  } finally {
    await app.close()
  }
}

/** The destination must already exist for list, verify and restore: a typo must not look like "no backups". */
async function openDestination (dir: string, values: Values): Promise<Destination> {
  if (isS3Url(dir)) return openS3(dir, values)
  const path = resolve(localDirectory(dir, values))
  const stats = await stat(path).catch(() => undefined)
  if (!stats) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, 'it does not exist')
  if (!stats.isDirectory()) throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(path, 'it is not a directory')
  return new LocalDestination(path)
}

// Any other scheme (gs://, https://, ...) would otherwise be taken for a relative path: `./gs:/bucket/prefix`.
const URL_SCHEME = /^[a-z][a-z0-9+.-]+:\/\//i

function isS3Url (dir: string): boolean {
  if (dir.startsWith('s3://')) return true
  if (URL_SCHEME.test(dir)) throw new UsageError(`unsupported destination "${dir}": give a directory or s3://bucket/prefix`)
  return false
}

const S3_FLAGS = ['endpoint', 'region', 'path-style', 'identity-file', 'recipient']

/** A directory destination: the S3 flags are a mistake with it. */
function localDirectory (dir: string, values: Values): string {
  const given = S3_FLAGS.filter((flag) => values[flag] !== undefined)
  if (given.length > 0) throw new UsageError(`--${given[0]} applies to an s3://bucket/prefix destination only`)
  return dir
}

function openS3 (url: string, values: Values): Destination {
  return createDestination(resolveS3({ ...s3Descriptor(url, values) }, url))
}

/**
 * `s3://bucket/prefix` as the plugin's S3 destination, checked as the plugin checks it (a mistake is a usage error).
 * The region defaults to AWS_REGION (or us-east-1, which S3-compatible servers accept); credentials come from the
 * SDK's standard chain. Encryption: the recipient (--recipient, enough to back up) and the identity (--identity-file,
 * needed to read back, and giving the recipient when that is omitted).
 */
function s3Descriptor (url: string, values: Values): S3Destination {
  const [bucket, ...rest] = url.slice('s3://'.length).split('/')
  const region = values.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
  const identity = values['identity-file'] === undefined ? undefined : readIdentity(String(values['identity-file']))
  const recipient = values.recipient === undefined ? undefined : String(values.recipient)
  const descriptor: S3Destination = {
    type: 's3',
    bucket,
    prefix: rest.join('/'),
    region: String(region),
    forcePathStyle: values['path-style'] === true
  }
  if (values.endpoint !== undefined) descriptor.endpoint = String(values.endpoint)
  if (identity !== undefined) descriptor.encryption = recipient === undefined ? { identity } : { recipient, identity }
  else if (recipient !== undefined) descriptor.encryption = { recipient }
  try {
    resolveS3({ ...descriptor }, url)
  } catch (err) {
    throw new UsageError(`invalid destination "${url}": ${(err as Error).message}`)
  }
  return descriptor
}

/** An age identity file, as `age-keygen` writes it: comments, then the key. The key itself is never printed. */
function readIdentity (path: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read --identity-file "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const key = text.split('\n').map((line) => line.trim()).find((line) => line.startsWith('AGE-SECRET-KEY-'))
  if (key === undefined) throw new UsageError(`--identity-file "${path}" holds no age identity (a line starting with AGE-SECRET-KEY-)`)
  return key
}

/** An offsite backup is downloaded (and decompressed) into a private temp directory, removed afterwards. */
async function withTempCopy<T> (destination: Destination, backup: BackupInfo, signal: AbortSignal, work: (path: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'fastify-sqlite-backup-'))
  try {
    return await withLocalCopy(destination, backup, { tempPath: join(dir, `${backup.id}.sqlite`), signal }, work)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Verified here, in this process: a command-line run has no event loop to keep free. */
async function verifyOne (destination: Destination, backup: BackupInfo): Promise<VerifyResult> {
  const checkedAt = new Date()
  let problems: string[]
  try {
    problems = await withTempCopy(destination, backup, new AbortController().signal, (path) => verifyBackupFile({ path, expected: checksumOf(backup.metadata) }, () => false))
  } catch (err) {
    // Gone or unreadable since it was listed: that is a finding about the backup, not a crash of the tool.
    problems = [`cannot read the backup: ${(err as Error).message}`]
  }
  return { ok: problems.length === 0, id: backup.id, path: backup.path, problems, checkedAt, durationMs: Date.now() - checkedAt.getTime() }
}

/**
 * Runs `work` with a signal that Ctrl-C or SIGTERM aborts, so that an interrupted restore removes its temp file
 * instead of leaving it beside the target. A second signal gets the default behaviour and kills the process.
 */
async function untilInterrupted<T> (work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const onSignal = (): void => controller.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    return await work(controller.signal)
  } catch (err) {
    if (controller.signal.aborted) throw new FST_SQLITE_BACKUP_INTERRUPTED({ cause: err })
    throw err
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
}

// Loaded on demand: list, verify and restore must work where only this package is installed.
async function loadFastify (): Promise<typeof import('fastify').default> {
  try {
    return (await import('fastify')).default
  } catch (err) {
    if (missingPackage(err, ['fastify']) === undefined) throw err
    throw new FST_SQLITE_BACKUP_MISSING_DEPENDENCY('The backup command', 'fastify', { cause: err })
  }
}

function parseTime (value: string): Date {
  const at = new Date(value)
  if (Number.isNaN(at.getTime())) throw new UsageError(`invalid --at "${value}": expected a time such as 2025-01-14T09:30:00Z`, 'restore')
  return at
}

function parseKeep (value: string): number {
  const keep = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(keep) || keep < 1) {
    throw new UsageError(`invalid --keep "${value}": expected a whole number of at least 1`, 'backup')
  }
  return keep
}
