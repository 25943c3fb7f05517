/** h2spec, the independent HTTP/2 conformance tester: where to find it and how to read its report. */
import { readFileSync } from 'node:fs';
import { installedPath } from './installed-binaries.js';

/** READYGATE_H2SPEC_BIN, else the pinned h2spec built (or found cached) by scripts/h2spec-binary.sh. */
export function h2specBinary(): Promise<string> {
  return installedPath('READYGATE_H2SPEC_BIN', 'h2spec-binary.sh', { timeoutMs: 600_000, mustExist: '' });
}

export interface H2specReport {
  /** Test ids such as http2/6.9.1/3 (section, then the test's place in it). */
  readonly passed: string[];
  readonly failed: string[];
  readonly skipped: string[];
}

/**
 * Reads h2spec's JUnit report. Its quirks: a testcase has no number (its place in the suite is it),
 * failures are <error> elements, and PING payloads can put raw NULs into the file.
 */
export function readH2specReport(file: string): H2specReport {
  const xml = readFileSync(file, 'utf8').replaceAll('\0', '');
  const report: H2specReport = { passed: [], failed: [], skipped: [] };
  for (const suite of xml.matchAll(/<testsuite [^>]*package="([^"]+)"[^>]*>([\s\S]*?)<\/testsuite>/g)) {
    const cases = [...suite[2]!.matchAll(/<testcase [^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)];
    cases.forEach((testcase, index) => {
      const id = `${suite[1]!}/${index + 1}`;
      const body = testcase[2] ?? '';
      if (body.includes('<error')) report.failed.push(id);
      else if (body.includes('<skipped')) report.skipped.push(id);
      else report.passed.push(id);
    });
  }
  return report;
}
