"""DMARC (RFC 7489): policy discovery, identifier alignment, disposition.

    evaluate_dmarc(resolver, from_domain, *, spf, dkim, arc=None, trusted_sealers=(),
                   trust_body_length=False, sample=None, context=None) -> DmarcResult
    org_domain(domain) -> str
    aligned(from_domain, auth_domain, mode) -> bool
    action(result, enforce_reject) -> "accept" | "quarantine" | "reject"

The policy record is looked up at ``_dmarc.<From domain>``, then at
``_dmarc.<organisational domain>`` (§6.6.3). The organisational domain is
the Public Suffix List's registrable domain (§3.2), from the maintained
`publicsuffixlist` package (its bundled list, ICANN and private sections).
The record's tags are parsed by the `dmarc` package (`dmarc.Policy`, the
lenient parser of §6.3: bad values are ignored); alignment is ours — the
package's relaxed check takes a parent of the From domain, even a public
suffix ("co.uk"), as aligned, where §3.1 asks for equal organisational
domains.

Results (RFC 8601 / RFC 7489 §11.2): none (no policy), pass (an aligned
SPF pass or an aligned DKIM pass), fail, temperror (the policy lookup
failed temporarily), permerror (no usable From, or a policy record that
does not parse). Disposition of a failure (§6.6.4): the subdomain policy
sp= when the policy came from the organisational domain and the From domain
is below it, else p=; a message outside the pct= sample gets the next
lower policy (reject → quarantine → none, override "sampled_out"); a chain
passing ARC from a trusted sealer is let through (RFC 8617 §7.2, override
"local_policy").
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dmarc as dmarclib
from publicsuffixlist import PublicSuffixList

from estafeta.actors.checks.arc import ArcResult
from estafeta.actors.checks.dkim_verify import DkimResult
from estafeta.actors.checks.dnsport import DnsPort, Lookup, Recorder, is_temporary, lookup_attributes
from estafeta.actors.checks.spf import SpfResult
from estafeta.actors.smtp.replies import Reply

_psl: PublicSuffixList | None = None

#: Dispositions from strongest to weakest (§6.6.4 sampling steps down one).
_WEAKER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


def org_domain(domain: str) -> str:
    """The organisational domain of `domain` (RFC 7489 §3.2): the public
    suffix plus one label ("mail.example.co.uk" → "example.co.uk"); the
    domain itself when it is a public suffix or its TLD is unknown."""
    global _psl
    if _psl is None:
        _psl = PublicSuffixList()
    domain = domain.rstrip(".").lower()
    return _psl.privatesuffix(domain) or domain


def aligned(from_domain: str, auth_domain: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 §3.1): strict ("s") — the domains are
    equal; relaxed ("r") — their organisational domains are."""
    a, b = from_domain.rstrip(".").lower(), auth_domain.rstrip(".").lower()
    if not a or not b:
        return False
    if a == b:
        return True
    return mode != "s" and org_domain(a) == org_domain(b)


@dataclass(frozen=True, slots=True)
class DmarcPolicy:
    """A published policy (RFC 7489 §6.3), defaults applied: p, sp (""
    when absent: p applies to subdomains), adkim and aspf ("r" or "s"),
    pct (0-100), rua (report URIs), and `domain` where it was found."""

    domain: str
    p: str
    sp: str
    adkim: str
    aspf: str
    pct: int
    rua: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """The DMARC evaluation of one message.

    - result: none, pass, fail, temperror, permerror;
    - from_domain: the RFC5322.From domain; org: its organisational domain;
    - policy: the published policy (None without one);
    - applied: the policy applied to a failure, p or sp ("" on pass/none);
    - disposition: what the policy asks after sampling and overrides:
      none, quarantine, reject (RFC 7489 §7.2 PolicyEvaluated);
    - override: "" | "sampled_out" | "local_policy" (§7.2
      PolicyOverrideType) and override_comment;
    - spf_domain / spf_result / spf_aligned: the SPF identity used;
    - dkim_domains: d= of every passing signature DMARC may use;
      dkim_aligned: one of them aligns;
    - reason: a line for logs and spans; lookups: the DNS queries.
    """

    result: str
    from_domain: str
    org: str = ""
    policy: DmarcPolicy | None = None
    applied: str = ""
    disposition: str = "none"
    override: str = ""
    override_comment: str = ""
    spf_domain: str = ""
    spf_result: str = ""
    spf_aligned: bool = False
    dkim_domains: tuple[str, ...] = ()
    dkim_aligned: bool = False
    reason: str = ""
    lookups: tuple[Lookup, ...] = ()

    def comment(self) -> str:
        """The Authentication-Results comment, e.g. "p=reject sp=none dis=quarantine"."""
        if self.policy is None:
            return ""
        parts = [f"p={self.policy.p}"]
        if self.policy.sp:
            parts.append(f"sp={self.policy.sp}")
        parts.append(f"dis={self.disposition}")
        return " ".join(parts)

    def attributes(self) -> dict[str, Any]:
        """Attributes for the check.dmarc span."""
        attrs: dict[str, Any] = {
            "dmarc.result": self.result,
            "dmarc.from_domain": self.from_domain,
            "dmarc.policy_domain": self.policy.domain if self.policy else "",
            "dmarc.policy": self.applied,
            "dmarc.disposition": self.disposition,
            "dmarc.override": self.override,
            "dmarc.spf_aligned": self.spf_aligned,
            "dmarc.dkim_aligned": self.dkim_aligned,
            "dmarc.reason": self.reason,
        }
        attrs.update(lookup_attributes("dmarc", self.lookups))
        return attrs


@functools.lru_cache(maxsize=4096)
def parse_policy(record: str, domain: str) -> DmarcPolicy:
    """A DmarcPolicy from a TXT record found at _dmarc.<domain>. Raises
    ValueError for a record that is not a valid DMARC record. (A pure
    function of its arguments, remembered: the same senders' records come
    back all day.)"""
    try:
        pol = dmarclib.Policy("DMARC1", domain)
        pol.parse_record(record, strict=False)
    except dmarclib.RecordSyntaxError as e:
        # §6.6.3 step 6: no valid p= but a rua=: act as p=none.
        if "rua=" in record.replace(" ", "").lower() and record.replace(" ", "").startswith("v=DMARC1"):
            return parse_policy(record.rstrip("; ") + "; p=none", domain)
        raise ValueError(str(e) or "not a DMARC record") from None
    sp = pol.sp.value if pol.sp is not dmarclib.DMARCDisposition.UNSPECIFIED else ""
    return DmarcPolicy(
        domain=domain,
        p=pol.p.value,
        sp=sp or "",
        adkim=pol.adkim.value,
        aspf=pol.aspf.value,
        pct=max(0, min(100, pol.pct)),
        rua=tuple(pol.rua),
    )


def _is_dmarc_record(text: str) -> bool:
    """§6.6.3 step 3: records not starting with "v=DMARC1" are discarded."""
    t = text.lstrip()
    if not t.startswith("v"):
        return False
    head = t.split(";", 1)[0].replace(" ", "").replace("\t", "")
    return head == "v=DMARC1"


def _discover(recorder: Recorder, from_domain: str, org: str) -> tuple[str, str, str]:
    """(status, record, domain) of policy discovery (§6.6.3): status "found",
    "none", "multiple" or "temperror:<rcode>"."""
    for domain in dict.fromkeys((from_domain, org)):
        answer = recorder.query(f"_dmarc.{domain}", "TXT")
        if is_temporary(answer):
            return f"temperror:{answer.rcode}", "", domain
        records = [r for r in answer.records if _is_dmarc_record(r)]
        if len(records) > 1:
            return "multiple", "", domain
        if records:
            return "found", records[0], domain
    return "none", "", ""


def _disposition(
    policy: DmarcPolicy, applied: str, sample: float | None, arc: ArcResult | None, trusted_sealers: Iterable[str]
) -> tuple[str, str, str]:
    """What to do with a failing message under the `applied` policy (p=,
    or sp= for a subdomain): (disposition, override reason, comment) as
    the aggregate report names them (RFC 7489 Appendix C, PolicyOverride).
    pct= sampling (§6.6.4: a message sampled out gets the next weaker
    policy), then a trusted sealer's ARC pass (RFC 8617 §7.2.1: local
    policy may accept it)."""
    disposition, override, comment = applied, "", ""
    if disposition != "none" and policy.pct < 100:
        if (random.uniform(0, 100) if sample is None else sample) >= policy.pct:
            disposition, override = _WEAKER[disposition], "sampled_out"
            comment = f"pct={policy.pct}"
    if disposition != "none" and arc is not None and arc.trusted_pass(trusted_sealers):
        disposition, override = "none", "local_policy"
        comment = f"arc=pass as.d={arc.sealer}"
    return disposition, override, comment


def evaluate_dmarc(
    resolver: DnsPort,
    from_domain: str,
    *,
    spf: SpfResult | None,
    dkim: DkimResult | None,
    arc: ArcResult | None = None,
    trusted_sealers: Iterable[str] = (),
    trust_body_length: bool = False,
    sample: float | None = None,
    context: Any = None,
) -> DmarcResult:
    """Evaluate DMARC for a message whose RFC5322.From domain is
    `from_domain` (message.from_domain; "" when the message has no usable
    From: permerror), given its SPF and DKIM results. `sample` in [0, 100)
    decides pct= sampling (random when None). Never raises."""
    if not from_domain:
        return DmarcResult("permerror", "", reason="no usable RFC5322.From")
    from_domain = from_domain.rstrip(".").lower()
    org = org_domain(from_domain)
    recorder = Recorder(resolver, context)
    status, record, where = _discover(recorder, from_domain, org)
    base: dict[str, Any] = dict(from_domain=from_domain, org=org)
    if status.startswith("temperror"):
        return DmarcResult(
            "temperror", reason=f"_dmarc.{where}: DNS {status[10:]}", lookups=recorder.recorded(), **base
        )
    if status == "multiple":
        return DmarcResult(
            "none", reason=f"_dmarc.{where}: more than one DMARC record", lookups=recorder.recorded(), **base
        )
    if status == "none":
        return DmarcResult("none", reason="no DMARC record", lookups=recorder.recorded(), **base)
    try:
        policy = parse_policy(record, where)
    except ValueError as e:
        return DmarcResult("permerror", reason=f"_dmarc.{where}: {e}", lookups=recorder.recorded(), **base)

    spf_domain = spf.domain if spf is not None else ""
    spf_result = spf.result if spf is not None else "none"
    spf_aligned = spf_result == "pass" and aligned(from_domain, spf_domain, policy.aspf)
    dkim_domains = dkim.trusted_domains(trust_body_length) if dkim is not None else ()
    dkim_aligned = any(aligned(from_domain, d, policy.adkim) for d in dkim_domains)
    base.update(
        policy=policy,
        spf_domain=spf_domain,
        spf_result=spf_result,
        spf_aligned=spf_aligned,
        dkim_domains=dkim_domains,
        dkim_aligned=dkim_aligned,
        lookups=recorder.recorded(),
    )
    if spf_aligned or dkim_aligned:
        how = " and ".join(x for x, ok in (("SPF", spf_aligned), ("DKIM", dkim_aligned)) if ok)
        return DmarcResult("pass", reason=f"aligned {how} pass", **base)

    applied = policy.sp if policy.sp and where != from_domain else policy.p
    disposition, override, comment = _disposition(policy, applied, sample, arc, trusted_sealers)
    return DmarcResult(
        "fail",
        applied=applied,
        disposition=disposition,
        override=override,
        override_comment=comment,
        reason="no aligned SPF or DKIM pass",
        **base,
    )


def action(result: DmarcResult, enforce_reject: bool = True) -> str:
    """What the session does with the message: "reject" (550 5.7.1 at the
    end of DATA, only when `enforce_reject`), "quarantine" (delivered to
    the recipient's Junk folder, marked; also a reject not enforced), or
    "accept"."""
    if result.result != "fail" or result.disposition == "none":
        return "accept"
    if result.disposition == "reject" and enforce_reject:
        return "reject"
    return "quarantine"


def reject_reply(result: DmarcResult) -> Reply:
    """The reply to a message whose action() is "reject", at the end of
    DATA: 550 5.7.1 (RFC 3463 "delivery not authorized, message refused";
    RFC 7372 has no DMARC-specific code; mox and Gmail reply 5.7.1)."""
    domain = result.policy.domain if result.policy else result.from_domain
    return Reply(550, "5.7.1", f"DMARC policy of {domain} rejects this message: {result.reason}")
