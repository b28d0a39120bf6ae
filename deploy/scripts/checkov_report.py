"""Reads checkov's JSON report and judges it: zero failed checks, and every skip carries an inline
reason long enough to be a reason. Prints the failures, then the skips grouped by reason.

    python checkov_report.py results_json.json

Exit 0 when clean; prints `RESULT passed=1 failed=0` (or 0/1) for deploy/check.sh.
"""

import json
import sys
from collections import defaultdict

MIN_REASON = 40


def main() -> int:
    with open(sys.argv[1]) as handle:
        data = json.load(handle)
    reports = data if isinstance(data, list) else [data]
    failed, skipped, passed = [], [], 0
    for report in reports:
        results = report.get("results", {})
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
        passed += report.get("summary", {}).get("passed", 0)
        if report.get("summary", {}).get("parsing_errors"):
            failed.append({"check_id": "PARSE", "resource": "parsing errors", "file_path": "",
                           "file_line_range": []})

    print(f"checkov: {passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    for check in failed:
        print(f"  FAILED {check['check_id']} {check['resource']} "
              f"({check.get('file_path', '')}:{check.get('file_line_range', '')})")

    weak = []
    by_reason = defaultdict(set)
    for check in skipped:
        reason = (check.get("check_result", {}).get("suppress_comment")
                  or check.get("suppress_comment") or "").strip()
        file_path = check.get("file_path", "")
        if len(reason) < MIN_REASON:
            weak.append(f"{check['check_id']} {check['resource']}: {reason!r}")
        by_reason[(check["check_id"], file_path, reason)].add(check["resource"])
    print(f"  skips ({len(by_reason)} distinct, each inline next to its resource):")
    for (check_id, file_path, reason), resources in sorted(by_reason.items()):
        print(f"    {check_id} {file_path}: {reason}")
    for line in weak:
        print(f"  SKIP WITHOUT A REAL REASON: {line}")

    ok = not failed and not weak and passed > 0
    print(f"RESULT passed={int(ok)} failed={int(not ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
