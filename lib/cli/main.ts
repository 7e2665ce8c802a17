#!/usr/bin/env node
// The command-line tool: list, verify and restore the backups in a destination, and take a one-off backup, for the
// day the app is down. This file reads the command line, runs the command and writes its output.
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { COMMANDS, UsageError, type CommandSpec, type Invocation, type Values } from './commands'
import { TOOL, TOOL_USAGE, COMMAND_USAGE, commandHelp, type CommandName } from './usage'

export interface CliIo {
  stdout: { write (text: string): unknown }
  stderr: { write (text: string): unknown }
}

const GLOBAL_OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const

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
  const manifest = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
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
