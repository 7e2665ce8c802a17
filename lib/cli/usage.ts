// Help texts of the command-line tool, one per command, plus the tool's own.

export const TOOL = 'fastify-sqlite-backup'

export type CommandName = 'list' | 'verify' | 'restore' | 'backup'

const EXIT_CODES = `Exit codes:
  0  success
  1  the operation failed (verify found problems, restore refused or failed, backup failed);
     the reason is one line on stderr, with the error code when there is one
  2  usage error (unknown command or option, missing or extra argument)
`

const S3_USAGE = `
<dir> may be s3://bucket/prefix, with the credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or the AWS SDK's other sources):
  --endpoint <url>  an S3-compatible server, e.g. http://127.0.0.1:9000
  --region <name>   default: AWS_REGION, else us-east-1
  --path-style      path-style URLs (most self-hosted servers need it)
  --identity-file <path>  the age identity that decrypts encrypted backups
`

const GLOBAL_OPTIONS = `Options of every command:
  --json        print one JSON document on stdout and nothing else
  -h, --help    show this help
`

export const COMMAND_USAGE: Record<CommandName, string> = {
  list: `Usage: ${TOOL} list <dir> [--json]

Lists the backups in <dir>, newest first: id, time, size, sha256 (first 12 hex
digits), restore drill result, and RECORD MISSING for a backup without its
.json record. Reads only the records, never the backups.
${S3_USAGE}`,
  verify: `Usage: ${TOOL} verify <dir> [id] [--all] [--json]

Verifies a backup (the newest by default): its size and sha256 against its
record, and PRAGMA integrity_check. Exits 1 when it has problems.

  --all         verify every backup in <dir>; exits 1 if any fails
${S3_USAGE}`,
  restore: `Usage: ${TOOL} restore <dir> [id | --at <time>] --to <path> [--force] [--json]

Writes a backup to <path>, verified, in one atomic rename; removes the stale
-wal, -shm and -journal files of <path>. Stop the app first. Default: the
newest state <dir> holds: the newest backup whose restore drill did not fail,
plus, with continuous backup, every change stored after it. With an id, that
backup alone.

  --to <path>   where to write the database (required)
  --at <time>   the state as of <time>, e.g. 2025-01-14T09:30:00Z: with
                continuous backup, every commit read by then replayed onto
                the newest backup before it; else the newest backup taken at
                or before <time>
  --force       replace an existing file at <path>

The restored database is in rollback-journal mode; PRAGMA journal_mode = WAL
switches it back.
${S3_USAGE}`,
  backup: `Usage: ${TOOL} backup <database> <dir> [--keep N] [--force] [--json]

Takes one consistent backup of <database> into <dir>, with the same engine
and file layout as the plugin (for cron). A run where nothing changed since
the newest backup is skipped.

  --keep <N>    then keep the N newest good backups in <dir> and delete the
                others; without --keep, nothing is deleted (the app's own
                retention policy looks after a destination it shares)
  --force       publish a new backup even if nothing changed

<dir> may be s3://bucket/prefix, backed up to as the plugin does (compressed
with gzip), with the credentials in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or the AWS SDK's other sources):
  --endpoint <url>  an S3-compatible server, e.g. http://127.0.0.1:9000
  --region <name>   default: AWS_REGION, else us-east-1
  --path-style      path-style URLs (most self-hosted servers need it)
  --recipient <age1...>   encrypt to this age recipient (public key)
  --identity-file <path>  or encrypt to the recipient of this age identity
`
}

export const TOOL_USAGE = `Usage: ${TOOL} <command> [options]

Backups of a SQLite database made by the fastify-sqlite-backup plugin, for
when the app is down.

Commands:
  list <dir>                          list the backups, newest first
  verify <dir> [id] [--all]           check backups against their records
  restore <dir> [id | --at <time>] --to <path> [--force]
                                      write a verified backup to <path>
  backup <database> <dir> [--keep N] [--force]
                                      take one backup now

Options:
  --json        print one JSON document on stdout and nothing else
  -h, --help    show this help (also after a command)
  --version     print the version

Run '${TOOL} <command> --help' for a command's options.

${EXIT_CODES}`

export function commandHelp (command: CommandName): string {
  return `${COMMAND_USAGE[command]}\n${GLOBAL_OPTIONS}\n${EXIT_CODES}`
}
