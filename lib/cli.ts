#!/usr/bin/env node
// The command-line tool: list, verify and restore the backups in a destination, and take a one-off backup, for the
// day the app is down. Each command returns an Outcome; main() alone writes output and picks the exit code.
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { stat, mkdtemp, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { tmpdir } from 'node:os'
import type { BackupInfo, BackupMetadata, RestoreResult, VerifyResult } from '../types/index'
import { LocalDestination } from './destinations/local'
import { S3Destination } from './destinations/s3'
import { findBackupAt, type Destination } from './destinations/destination'
import { resolveS3 } from './destination-options'
import { createEmptyFile } from './durable-fs'
import { verifyBackupFile } from './verify'
import { restoreBackup } from './restore'
import { fastifySqliteBackup } from './plugin'
import { DEFAULT_KEEP, DEFAULT_TIMEOUT } from './options'
import { FST_SQLITE_BACKUP_NOT_FOUND } from './errors'
import { formatList, formatVerify, formatRestore, formatBackup } from './cli-format'
import { TOOL, TOOL_USAGE, COMMAND_USAGE, commandHelp, type CommandName } from './cli-usage'

export interface CliIo {
  stdout: { write (text: string): unknown }
  stderr: { write (text: string): unknown }
}

/** What a command produced: `value` for --json, `text` for humans, and `failure` (one line) when it exits 1. */
interface Outcome {
  value: unknown
  text: string
  failure?: string
}

type Values = Record<string, string | boolean | undefined>

interface Invocation {
  positionals: string[]
  values: Values
}

interface CommandSpec {
  options: Record<string, { type: 'string' | 'boolean', short?: string }>
  required: string[]
  optional: string[]
  run: (invocation: Invocation) => Promise<Outcome>
}

/** Bad command line: exit 2, with the usage hint. */
class UsageError extends Error {
  constructor (message: string, readonly command?: CommandName) {
    super(message)
  }
}

const GLOBAL_OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const

// Where an s3:// destination is: the credentials come from the environment (AWS_ACCESS_KEY_ID, ...), never flags.
const S3_OPTIONS = {
  endpoint: { type: 'string' },
  region: { type: 'string' },
  'path-style': { type: 'boolean' },
  'identity-file': { type: 'string' }
} as const

const COMMANDS: Record<CommandName, CommandSpec> = {
  list: { options: { ...S3_OPTIONS }, required: ['dir'], optional: [], run: listCommand },
  verify: { options: { all: { type: 'boolean' }, ...S3_OPTIONS }, required: ['dir'], optional: ['id'], run: verifyCommand },
  restore: {
    options: { to: { type: 'string' }, at: { type: 'string' }, force: { type: 'boolean' }, ...S3_OPTIONS },
    required: ['dir'],
    optional: ['id'],
    run: restoreCommand
  },
  backup: {
    options: { keep: { type: 'string' }, force: { type: 'boolean' } },
    required: ['database', 'dir'],
    optional: [],
    run: backupCommand
  }
}

/** Runs the tool on `argv` (without node and the script) and returns the exit code; never throws. */
export async function main (argv: string[], io: CliIo = process): Promise<number> {
  try {
    const parsed = parseCommandLine(argv)
    if (parsed.kind === 'help') {
      io.stdout.write(parsed.text)
      return 0
    }
    if (parsed.kind === 'version') {
      io.stdout.write(`${readVersion()}\n`)
      return 0
    }
    const outcome = await COMMANDS[parsed.command].run(parsed.invocation)
    io.stdout.write(parsed.invocation.values.json === true ? JSON.stringify(outcome.value, null, 2) + '\n' : outcome.text)
    if (outcome.failure === undefined) return 0
    io.stderr.write(errorLine(outcome.failure))
    return 1
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(errorLine(err.message) + usageHint(err.command))
      return 2
    }
    io.stderr.write(errorLine(describeError(err)))
    return 1
  }
}

// ---- commands ----

async function listCommand ({ positionals: [dir], values }: Invocation): Promise<Outcome> {
  const destination = await openDestination(dir, values)
  const backups = await destination.list()
  return { value: backups, text: formatList(destination.name, backups) }
}

async function verifyCommand ({ positionals: [dir, id], values }: Invocation): Promise<Outcome> {
  if (id !== undefined && values.all === true) throw new UsageError('give a backup id or --all, not both', 'verify')
  const destination = await openDestination(dir, values)
  const backups = values.all === true ? await destination.list() : [id === undefined ? await newest(destination) : await destination.find(id)]
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
  // find() validates the id, so that no input can name a file outside the destination.
  const backup = id !== undefined
    ? await destination.find(id)
    : at !== undefined ? await findBackupAt(destination, at) : await newestGood(destination)

  const started = Date.now()
  const target = resolve(to)
  const { sha256, bytes } = await untilInterrupted((signal) => withLocalCopy(destination, backup, signal, (backupPath) => restoreBackup(
    { id: backup.id, backupPath, expected: expectedOf(backup.metadata), to: target, force: values.force === true },
    { timeout: DEFAULT_TIMEOUT, signal }
  )))
  const result: RestoreResult = { id: backup.id, path: target, bytes, sha256, durationMs: Date.now() - started }
  return { value: result, text: formatRestore(result, backup) }
}

async function backupCommand ({ positionals: [database, dir], values }: Invocation): Promise<Outcome> {
  const keep = values.keep === undefined ? DEFAULT_KEEP : parseKeep(String(values.keep))
  const Fastify = await loadFastify()
  // The plugin itself, so that a backup from cron is made, named, checked and pruned exactly as the app's are.
  const app = Fastify({ logger: false })
  try {
    await app.register(fastifySqliteBackup, { database, destination: dir, interval: false, keep })
    await app.ready()
    const result = await app.backup.now({ force: values.force === true })
    return { value: result, text: formatBackup(result) }
  } finally {
    await app.close()
  }
}

// ---- helpers of the commands ----

/** The destination must already exist for list, verify and restore: a typo must not look like "no backups". */
async function openDestination (dir: string, values: Values): Promise<Destination> {
  if (dir.startsWith('s3://')) return openS3(dir, values)
  if (values.endpoint !== undefined || values.region !== undefined || values['path-style'] !== undefined || values['identity-file'] !== undefined) {
    throw new UsageError('--endpoint, --region, --path-style and --identity-file apply to an s3://bucket/prefix destination only')
  }
  const path = resolve(dir)
  const stats = await stat(path).catch(() => undefined)
  if (!stats) throw new Error(`the directory "${path}" does not exist`)
  if (!stats.isDirectory()) throw new Error(`"${path}" is not a directory`)
  return new LocalDestination(path)
}

/** `s3://bucket/prefix`; the region defaults to AWS_REGION (or us-east-1, which S3-compatible servers accept). */
function openS3 (url: string, values: Values): S3Destination {
  const [bucket, ...rest] = url.slice('s3://'.length).split('/')
  const region = values.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
  const identity = values['identity-file'] === undefined ? undefined : readIdentity(String(values['identity-file']))
  try {
    return new S3Destination(resolveS3({
      type: 's3',
      bucket,
      prefix: rest.join('/'),
      region,
      endpoint: values.endpoint,
      forcePathStyle: values['path-style'] === true,
      encryption: identity === undefined ? undefined : { identity }
    }, url))
  } catch (err) {
    throw new UsageError(`invalid destination "${url}": ${(err as Error).message}`)
  }
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

async function newest (destination: Destination): Promise<BackupInfo> {
  const [first] = await destination.list()
  if (!first) throw new FST_SQLITE_BACKUP_NOT_FOUND('yet', destination.name)
  return first
}

async function newestGood (destination: Destination): Promise<BackupInfo> {
  const backups = await destination.list()
  const good = backups.find((backup) => backup.good)
  if (!good) throw new FST_SQLITE_BACKUP_NOT_FOUND(backups.length === 0 ? 'yet' : 'whose restore drill passed', destination.name)
  return good
}

/** An offsite backup is downloaded (and decompressed) into a private temp directory, removed afterwards. */
async function withLocalCopy<T> (destination: Destination, backup: BackupInfo, signal: AbortSignal, work: (path: string) => Promise<T>): Promise<T> {
  const local = destination.localFile(backup)
  if (local !== undefined) return await work(local)
  const dir = await mkdtemp(join(tmpdir(), 'fastify-sqlite-backup-'))
  try {
    const path = join(dir, `${backup.id}.sqlite`)
    await createEmptyFile(path)
    await destination.download(backup, path, signal)
    return await work(path)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Verified here, in this process: a command-line run has no event loop to keep free. */
async function verifyOne (destination: Destination, backup: BackupInfo): Promise<VerifyResult> {
  const checkedAt = new Date()
  let problems: string[]
  try {
    problems = await withLocalCopy(destination, backup, new AbortController().signal, (path) => verifyBackupFile({ path, expected: expectedOf(backup.metadata) }, () => false))
  } catch (err) {
    // Gone or unreadable since it was listed: that is a finding about the backup, not a crash of the tool.
    problems = [`cannot read the backup: ${(err as Error).message}`]
  }
  return { ok: problems.length === 0, id: backup.id, path: backup.path, problems, checkedAt, durationMs: Date.now() - checkedAt.getTime() }
}

function expectedOf (metadata: BackupMetadata | null): { sha256: string, bytes: number } | null {
  return metadata ? { sha256: metadata.sha256, bytes: metadata.bytes } : null
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
    if (controller.signal.aborted) throw new Error('interrupted; nothing was restored')
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
    throw new Error(`the backup command needs the fastify package, which could not be loaded: ${(err as Error).message}`)
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

// ---- command line and output ----

type ParsedCommandLine =
  | { kind: 'help', text: string }
  | { kind: 'version' }
  | { kind: 'run', command: CommandName, invocation: Invocation }

/**
 * `[global flags] <command> [arguments and options]`. The flags before the command are the tool's own
 * (--help, --version, --json); everything after it is parsed strictly against the command's options.
 */
function parseCommandLine (argv: string[]): ParsedCommandLine {
  const commandIndex = argv.findIndex((arg) => !arg.startsWith('-'))
  const leading = commandIndex === -1 ? argv : argv.slice(0, commandIndex)
  const tool = parse(leading, { ...GLOBAL_OPTIONS, version: { type: 'boolean' } }, undefined).values
  if (tool.help === true) return { kind: 'help', text: TOOL_USAGE }
  if (tool.version === true) return { kind: 'version' }
  if (commandIndex === -1) throw new UsageError('missing command')

  const name = argv[commandIndex]
  if (!Object.hasOwn(COMMANDS, name)) throw new UsageError(`unknown command "${name}"`)
  const command = name as CommandName
  const spec = COMMANDS[command]
  const invocation = parse([...leading, ...argv.slice(commandIndex + 1)], { ...GLOBAL_OPTIONS, ...spec.options }, command)
  if (invocation.values.help === true) return { kind: 'help', text: commandHelp(command) }

  const { positionals } = invocation
  if (positionals.length < spec.required.length) throw new UsageError(`missing <${spec.required[positionals.length]}>`, command)
  if (positionals.length > spec.required.length + spec.optional.length) {
    throw new UsageError(`unexpected argument "${positionals[spec.required.length + spec.optional.length]}"`, command)
  }
  return { kind: 'run', command, invocation }
}

function parse (args: string[], options: CommandSpec['options'], command: CommandName | undefined): Invocation {
  try {
    const { values, positionals } = parseArgs({ args, options, strict: true, allowPositionals: command !== undefined })
    return { values: values as Values, positionals }
  } catch (err) {
    const { code, message } = err as { code?: string, message: string }
    if (!code?.startsWith('ERR_PARSE_ARGS')) throw err
    // Node's message goes on to explain `--`; its first sentence is the point.
    const first = message.split('. ')[0]
    throw new UsageError(first.charAt(0).toLowerCase() + first.slice(1), command)
  }
}

function usageHint (command: CommandName | undefined): string {
  if (command === undefined) return `Run '${TOOL} --help' for usage.\n`
  return `${COMMAND_USAGE[command].split('\n')[0]}\nRun '${TOOL} ${command} --help' for details.\n`
}

/** `fastify-sqlite-backup: <message> (<code>)`, on one line whatever the message holds. */
function describeError (err: unknown): string {
  const { message, code } = err as { message?: string, code?: unknown }
  const text = String(message ?? err)
  return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text
}

function errorLine (message: string): string {
  return `${TOOL}: ${message.replace(/\s*\n\s*/g, ' ')}\n`
}

function readVersion (): string {
  const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}

if (require.main === module) {
  // A closed pipe (`fastify-sqlite-backup list dir | head -1`) is the reader's choice, not an error of the tool.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err
  })
  // The exit code, not process.exit(): output still being flushed to a pipe must not be cut off.
  main(process.argv.slice(2)).then((code) => { process.exitCode = code })
}
