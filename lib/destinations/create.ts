import type { Destination } from './destination'
import { s3Url, type S3Settings } from './s3-options'
import { LocalDestination } from './local'
import { FST_SQLITE_BACKUP_MISSING_DEPENDENCY } from '../errors'
import { missingPackage } from '../optional-dependency'
import type { DiskPace } from '../io-pace'

export type DestinationSettings = { type: 'local', directory: string } | S3Settings

// Installed by users who back up to S3 only: a local-only install loads none of it.
const S3_PACKAGES = ['@aws-sdk/client-s3', '@aws-sdk/lib-storage']

/**
 * The implementation of one configured destination; `scope` names the runs that write to it (see leases.ts), `disk`
 * paces a local one's big writes and deletions.
 */
export function createDestination (settings: DestinationSettings, scope?: string, disk?: DiskPace): Destination {
  if (settings.type === 'local') return new LocalDestination(settings.directory, scope, disk)
  const { S3BucketDestination } = loadS3()
  return new S3BucketDestination(settings)
}

/** How a destination shows in logs, errors and status, and in the scope of the leases: its directory or S3 URL. */
export function destinationName (settings: DestinationSettings): string {
  return settings.type === 'local' ? settings.directory : s3Url(settings)
}

/** The S3 implementation, loaded on first use so that the AWS SDK costs nothing to those who do not use it. */
function loadS3 (): typeof import('./s3') {
  try {
    return require('./s3') as typeof import('./s3')
  } catch (err) {
    const missing = missingPackage(err, S3_PACKAGES)
    if (missing === undefined) throw err
    throw new FST_SQLITE_BACKUP_MISSING_DEPENDENCY(`An S3 destination (${missing} is missing)`, S3_PACKAGES.join(' '), { cause: err })
  }
}
