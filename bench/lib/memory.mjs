import { readFileSync } from 'node:fs'

/**
 * The process's peak resident memory so far, in bytes. Read from /proc rather than resourceUsage().maxRSS,
 * which a forked child inherits from its parent's peak.
 */
export function peakRss () {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))
  return match ? Number(match[1]) * 1024 : null
}
