// Human-readable output of the command-line tool. Pure functions of the results: no I/O here.
import type { BackupInfo, BackupResult, RestoreResult, VerifyResult, RestorableWindow } from '../../types/index'

/** Bytes in binary units, as `ls -h` and `du -h` show them: `512 B`, `4.0 KiB`, `12.3 MiB`. */
export function humanSize (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`
}

function shortHash (sha256: string): string {
  return sha256.slice(0, 12)
}

/** One row per backup, newest first, under a header; a missing record is called out rather than hidden. */
export function formatList (directory: string, backups: BackupInfo[]): string {
  if (backups.length === 0) return `no backups in ${directory}\n`
  const rows = backups.map((backup) => {
    const { metadata } = backup
    const notes: string[] = []
    if (metadata === null) notes.push('RECORD MISSING')
    else if (metadata.drill) notes.push(metadata.drill.ok ? 'drill: ok' : 'drill: FAILED')
    return [
      backup.id,
      backup.createdAt.toISOString(),
      metadata ? humanSize(metadata.bytes) : '?',
      metadata ? shortHash(metadata.sha256) : '?',
      notes.join(', ')
    ]
  })
  const total = backups.reduce((sum, backup) => sum + (backup.metadata?.bytes ?? 0), 0)
  const count = `${backups.length} backup${backups.length === 1 ? '' : 's'}, ${humanSize(total)}`
  return table([['ID', 'CREATED', 'SIZE', 'SHA256', ''], ...rows]) + `${count} in ${directory}\n`
}

export function formatVerify (results: VerifyResult[]): string {
  return results.map((result) => result.ok
    ? `ok ${result.id}\n`
    : `FAILED ${result.id}\n` + result.problems.map((problem) => `  ${problem}\n`).join('')
  ).join('')
}

/** The moments a restore can return, when the destination holds continuous backup. */
export function formatWindow (window: RestorableWindow | null): string {
  return window === null ? '' : `restorable to any moment from ${window.from.toISOString()} to ${window.to.toISOString()} (restore --at <time>)\n`
}

export function formatRestore (result: RestoreResult, backup: BackupInfo): string {
  const replayed = result.replayed === undefined
    ? ''
    : `, then ${result.replayed.commits} commit${result.replayed.commits === 1 ? '' : 's'} replayed up to one read at ${result.replayed.at?.toISOString() ?? 'the snapshot'}`
  return `restored backup ${result.id} (taken ${backup.createdAt.toISOString()}, ${humanSize(result.bytes)}, ` +
    `sha256 ${shortHash(result.sha256)})${replayed} to ${result.path}\n` +
    'The restored database is in rollback-journal mode; run PRAGMA journal_mode = WAL on it to switch it back to WAL.\n'
}

export function formatBackup (result: BackupResult): string {
  if (result.skipped) return `skipped: unchanged since the newest backup, ${result.id} (${result.path})\n`
  return `published ${result.id} (${humanSize(result.bytes)}, sha256 ${shortHash(result.sha256)}, ` +
    `${result.durationMs} ms) at ${result.path}\n`
}

/** Left-aligned columns two spaces apart; trailing blanks trimmed. */
function table (rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd() + '\n').join('')
}
