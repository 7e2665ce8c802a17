import createError from '@fastify/error'

// Every error a user can meet, declared once. Messages say what to do about it.

export const FST_SQLITE_BACKUP_INVALID_OPTION = createError(
  'FST_SQLITE_BACKUP_INVALID_OPTION',
  'Invalid option "%s": expected %s',
  500,
  TypeError
)

export const FST_SQLITE_BACKUP_UNKNOWN_OPTION = createError(
  'FST_SQLITE_BACKUP_UNKNOWN_OPTION',
  'Unknown option "%s"%s',
  500,
  TypeError
)

export const FST_SQLITE_BACKUP_INVALID_DATABASE = createError(
  'FST_SQLITE_BACKUP_INVALID_DATABASE',
  'Cannot back up this database: %s'
)

export const FST_SQLITE_BACKUP_INVALID_DESTINATION = createError(
  'FST_SQLITE_BACKUP_INVALID_DESTINATION',
  'Cannot use "%s" as the backup destination: %s'
)

export const FST_SQLITE_BACKUP_ALREADY_REGISTERED = createError(
  'FST_SQLITE_BACKUP_ALREADY_REGISTERED',
  'fastify-sqlite-backup is already registered on this instance; register it once per database, in separate encapsulated contexts if you need several'
)

export const FST_SQLITE_BACKUP_NOT_READY = createError(
  'FST_SQLITE_BACKUP_NOT_READY',
  'Backups start once the app is ready; call fastify.backup.now() after fastify.ready() or from a route',
  503
)

export const FST_SQLITE_BACKUP_CLOSED = createError(
  'FST_SQLITE_BACKUP_CLOSED',
  'The app is closing, so no backup was taken; the previous backups are untouched',
  503
)

export const FST_SQLITE_BACKUP_TIMEOUT = createError(
  'FST_SQLITE_BACKUP_TIMEOUT',
  'The backup did not finish within %d ms and was aborted; no file was published. %s',
  504
)

export const FST_SQLITE_BACKUP_SNAPSHOT_FAILED = createError(
  'FST_SQLITE_BACKUP_SNAPSHOT_FAILED',
  'Could not read a snapshot of the database: %s'
)

export const FST_SQLITE_BACKUP_CORRUPT_DATABASE = createError(
  'FST_SQLITE_BACKUP_CORRUPT_DATABASE',
  'The database looks corrupt (%s), so no backup was published; run PRAGMA integrity_check on it, and restore a good backup if it fails'
)

export const FST_SQLITE_BACKUP_PUBLISH_FAILED = createError(
  'FST_SQLITE_BACKUP_PUBLISH_FAILED',
  'Could not write the backup into "%s": %s. Nothing was published; check free space and permissions of the destination'
)

export const FST_SQLITE_BACKUP_INVALID_ID = createError(
  'FST_SQLITE_BACKUP_INVALID_ID',
  'Invalid backup id %s: expected an id such as "20260101T120000000Z-0a1b2c3d" as returned by list()',
  400,
  TypeError
)

export const FST_SQLITE_BACKUP_NOT_FOUND = createError(
  'FST_SQLITE_BACKUP_NOT_FOUND',
  'No backup %s in "%s"; list() (or the list command) shows the backups there',
  404
)

export const FST_SQLITE_BACKUP_VERIFY_FAILED = createError(
  'FST_SQLITE_BACKUP_VERIFY_FAILED',
  'Backup %s failed verification (%s); nothing was restored. Choose an older backup',
  422
)

export const FST_SQLITE_BACKUP_RESTORE_REFUSED = createError(
  'FST_SQLITE_BACKUP_RESTORE_REFUSED',
  'Refusing to restore over "%s": %s',
  409
)

export const FST_SQLITE_BACKUP_RESTORE_FAILED = createError(
  'FST_SQLITE_BACKUP_RESTORE_FAILED',
  'Could not restore to "%s": %s'
)

export const FST_SQLITE_BACKUP_S3_ACCESS_DENIED = createError(
  'FST_SQLITE_BACKUP_S3_ACCESS_DENIED',
  'S3 refused access to "%s" (%s); check the credentials (the "credentials" option or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and that they may read, write and delete in this bucket'
)

export const FST_SQLITE_BACKUP_S3_NO_BUCKET = createError(
  'FST_SQLITE_BACKUP_S3_NO_BUCKET',
  'The bucket of "%s" does not exist at %s; create it, or fix "bucket", "region" and "endpoint"'
)

export const FST_SQLITE_BACKUP_S3_REQUEST_FAILED = createError(
  'FST_SQLITE_BACKUP_S3_REQUEST_FAILED',
  'Could not %s: %s. Check that the S3 endpoint is reachable and answers; backups to it are retried',
  502
)

export const FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT = createError(
  'FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT',
  'The upload to "%s" did not finish within %d ms and was aborted; raise the destination\'s "uploadTimeout" or check the network',
  504
)

export const FST_SQLITE_BACKUP_MISSING_DEPENDENCY = createError(
  'FST_SQLITE_BACKUP_MISSING_DEPENDENCY',
  '%s needs optional packages that are not installed; install them beside fastify-sqlite-backup: npm install %s'
)

export const FST_SQLITE_BACKUP_INTERRUPTED = createError(
  'FST_SQLITE_BACKUP_INTERRUPTED',
  'Interrupted by a signal; nothing was restored and no temp file was left behind'
)

export const FST_SQLITE_BACKUP_DECRYPT_FAILED = createError(
  'FST_SQLITE_BACKUP_DECRYPT_FAILED',
  'Backup %s could not be decrypted (%s); nothing was restored. Check the destination\'s "encryption.identity", or choose another backup',
  422
)

export const FST_SQLITE_BACKUP_SYNC_FAILED = createError(
  'FST_SQLITE_BACKUP_SYNC_FAILED',
  'Changes could not be stored at %s: %s. They stay in the WAL and are shipped at the next pass; check the destination',
  503
)

export const FST_SQLITE_BACKUP_CHAIN_BROKEN = createError(
  'FST_SQLITE_BACKUP_CHAIN_BROKEN',
  'The changes stored at %s have a hole: %s. Nothing was restored; restore to a time before the hole (--at), or a snapshot taken after it',
  422
)

export const FST_SQLITE_BACKUP_NOT_CONTINUOUS = createError(
  'FST_SQLITE_BACKUP_NOT_CONTINUOUS',
  '%s needs continuous backup: register the plugin with { continuous: true } (the database must be in WAL mode: PRAGMA journal_mode = WAL)'
)

const CODE_PREFIX = 'FST_SQLITE_BACKUP_'

/** One of the errors above: it already says what happened and what to do, so it is passed on as it is. */
export function isPluginError (err: unknown): err is Error & { code: string } {
  const code = (err as { code?: unknown } | null)?.code
  return err instanceof Error && typeof code === 'string' && code.startsWith(CODE_PREFIX)
}

/** Storage that could not be reached or did not answer in time: worth retrying, never a mistake in the setup. */
export function isTransportError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'FST_SQLITE_BACKUP_S3_REQUEST_FAILED' || code === 'FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT'
}
