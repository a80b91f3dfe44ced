#!/usr/bin/env python3
"""Writes the hand-made seed corpus under fuzz/corpus/<target>/ (run from anywhere; rewrites it).

Each file's name says what the gateway must make of it: `ok-...` accepted, `err-...` refused.
tests/fuzz_corpus.rs replays every file on each `cargo test` and checks exactly that; the fuzzer
(scripts/fuzz.sh) starts from these files. Standard library only.
"""
import base64
import gzip
import hashlib
import json
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- decimal -------------------------------------------------------------------------------
DECIMALS = {
    "ok-plain": "1234.50",
    "ok-negative": "-12.5",
    "ok-tiny": "0.0000000001",
    "ok-exp-negative": "1E-10",
    "ok-exp-lower": "1.5e3",
    "ok-exp-plus": "-2E+2",
    "ok-java-bigdecimal": "1.23E-7",
    "ok-zero-huge-exp": "0E-3000",
    "ok-max": "79228162514264337593543950335",
    "ok-min-scale": "0.0000000000000000000000000001",
    "ok-trailing-zeros-absorb": "100E-30",
    "ok-negative-zero": "-0.000",
    "ok-vendor-digits": "0.1234567890123456789",
    "err-empty": "",
    "err-plus": "+1",
    "err-space": " 1",
    "err-thousands": "1,000",
    "err-trailing-point": "1.",
    "err-leading-point": ".5",
    "err-nan": "NaN",
    "err-two-points": "1.2.3",
    "err-hex": "0x10",
    "err-exp-only": "e5",
    "err-exp-long": "1e12345",
    "err-exp-too-small": "1E-29",
    "err-too-many-digits": "0.12345678901234567890123456789",
    "err-overflow": "79228162514264337593543950336",
    "err-too-long": "1" * 41,
    "err-inf": "inf",
}
for name, text in DECIMALS.items():
    write("decimal", name, text)

# ---- currency_amount -----------------------------------------------------------------------
AMOUNTS = {
    "ok-zar": "ZAR 1234.50",
    "ok-jpy": "JPY 1200",
    "ok-kwd": "KWD 5.125",
    "ok-code-only": "EUR",
    "ok-scientific": "ZAR 1.05E2",
    "ok-negative-zero": "ZAR -0.00",
    "ok-usd-cents": "USD 0.01",
    "err-lowercase": "zar 1",
    "err-metal": "XAU 1",
    "err-unknown": "XYZ 1",
    "err-negative": "USD -1",
    "err-too-fine": "ZAR 0.001",
    "err-jpy-fraction": "JPY 1.5",
    "err-scientific-too-fine": "ZAR 1E-3",
    "err-not-a-number": "ZAR lots",
    "err-two-letters": "ZA 1",
}
for name, text in AMOUNTS.items():
    write("currency_amount", name, text)


# ---- page_token ----------------------------------------------------------------------------
def fingerprint(filters):
    return hashlib.sha256(filters.encode()).hexdigest()[:16]


def token(filters, last_id, version="2"):
    payload = f"{version}|{fingerprint(filters)}|{last_id}".encode()
    return base64.urlsafe_b64encode(payload + hashlib.sha256(payload).digest()[:12]).decode().rstrip("=")


LIST = "status=1|external_ref="
t = token(LIST, "cus_0192a0b1c2d3e4f5")
write("page_token", "ok-customers", f"{LIST}\n{t}")
write("page_token", "ok-no-filters", token("", "42"))
write("page_token", "ok-price-rules", "price_rules\n" + token("price_rules", "pr_7f3e2a"))
write("page_token", "ok-empty-token", f"{LIST}\n")
write("page_token", "err-other-filters", "status=2|external_ref=\n" + t)
write("page_token", "err-flipped", f"{LIST}\n" + ("B" if t[0] != "B" else "C") + t[1:])
write("page_token", "err-truncated", f"{LIST}\n{t[:-3]}")
write("page_token", "err-padded", f"{LIST}\n{t}==")
write("page_token", "err-version-1", base64.urlsafe_b64encode(f"1|{fingerprint('')}|cus_1".encode()).decode().rstrip("="))
write("page_token", "err-odd-id", token("", "a b"))
write("page_token", "err-garbage", "garbage!")
# What the fuzzer seals as a payload (it gets a good check): a plain one and a NUL in the id.
write("page_token", "err-payload-as-text", f"2|{fingerprint('')}|cus_9")
write("page_token", "err-payload-nul", f"2|{fingerprint('')}|a\0b")


# ---- request_validation: protobuf, first byte the type -------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    if isinstance(value, bool):
        return varint(number << 3) + varint(int(value))
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def message(*fields):
    return b"".join(field(n, v) for n, v in fields if v not in ("", 0, None, False))


def timestamp(seconds, nanos=0):
    return message((1, seconds), (2, nanos))


NOV_3 = 1793664000  # 2026-11-03T00:00:00Z


def usage_line(**over):
    line = dict(
        vendor_account_id="111122223333", service="Amazon Elastic Compute Cloud - Compute",
        meter="EU-BoxUsage:t3.micro", region="eu-west-1", start=NOV_3, end=NOV_3 + 3600,
        meter_name="t3.micro hours", quantity="24", unit="Hrs", cost="0.2496",
        list_cost="0.2760", currency="USD", estimated=True, tenant="",
    )
    line.update(over)
    return message(
        (1, line["vendor_account_id"]), (2, line["service"]), (3, line["meter"]),
        (4, line["region"]),
        (5, timestamp(line["start"]) if line["start"] is not None else None),
        (6, timestamp(line["end"]) if line["end"] is not None else None),
        (7, line["meter_name"]), (8, line["quantity"]), (9, line["unit"]), (10, line["cost"]),
        (11, line["list_cost"]), (12, line["currency"]), (13, line["estimated"]),
        (14, line["tenant"]),
    )


def request(kind, body):
    return bytes([kind]) + body


ingest = lambda *lines, rid="push-2026-11-03-0001", pa="pa_0192a0b1c2d3": request(
    0, message((1, rid), (2, pa)) + b"".join(field(3, l) for l in lines))
write("request_validation", "ok-ingest", ingest(usage_line(), usage_line(meter="EU-EBS:VolumeUsage.gp3", quantity="1E-10", cost="1.2E-9")))
write("request_validation", "ok-ingest-microsoft", ingest(usage_line(
    vendor_account_id="4c5d2f8e-0b1a-4f3e-9c7d-2a1b3c4d5e6f", service="Virtual Machines",
    meter="7d4bd3c4-3c3b-4a1e-8b52-0c5e6f7a8b9c", region="westeurope", currency="EUR",
    quantity="24.000000000001", cost="2.66666666666667", list_cost="", tenant="c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8")))
write("request_validation", "err-ingest-no-request-id", ingest(usage_line(), rid=""))
write("request_validation", "err-ingest-window-backwards", ingest(usage_line(end=NOV_3 - 3600)))
write("request_validation", "err-ingest-float-cost", ingest(usage_line(cost="1.0e400")))
write("request_validation", "err-ingest-negative-quantity", ingest(usage_line(quantity="-1")))
write("request_validation", "err-ingest-bad-currency", ingest(usage_line(currency="usd")))
write("request_validation", "err-ingest-timestamp-out-of-range", ingest(usage_line(start=-(1 << 62))))
write("request_validation", "err-ingest-control-chars", ingest(usage_line(service="EC2\x07")))
write("request_validation", "err-ingest-bad-partner-account", ingest(usage_line(), pa="pa 1"))

customer = lambda **o: request(1, message(
    (1, o.get("rid", "create-cus-0001")), (2, o.get("ref", "BSS-100234")),
    (3, o.get("name", "Acme Widgets (Pty) Ltd")), (4, o.get("currency", "ZAR")),
    (5, o.get("cycle", 1)), (6, o.get("tz", "Africa/Johannesburg")),
    (7, o.get("limit", "50000.00")),
) + b"".join(field(8, e) for e in o.get("enrollments", [])))
write("request_validation", "ok-customer", customer())
write("request_validation", "ok-customer-aws-enrollment", customer(enrollments=[message(
    (1, 1), (2, "pa_0192a0b1c2d3"), (3, message((1, "aws+acme@example.co.za"), (2, "Acme production"))))]))
write("request_validation", "ok-customer-simulator-enrollment", customer(enrollments=[message(
    (1, 3), (2, "pa_sim"), (5, message((1, "acme-sim"),)))]))
write("request_validation", "err-customer-bad-zone", customer(tz="Mars/Olympus"))
write("request_validation", "err-customer-limit-too-fine", customer(limit="10.001"))
write("request_validation", "err-customer-no-cycle", customer(cycle=0))
write("request_validation", "err-customer-unknown-cycle", customer(cycle=9))
write("request_validation", "err-customer-unknown-vendor", customer(enrollments=[message((1, 77),)]))

rule = lambda **o: request(2, message((1, o.get("rid", "rule-0001")), (2, message(
    (2, o.get("vendor", 1)), (3, o.get("service", "")), (4, o.get("meter", "")),
    (5, o.get("customer", "")), (6, o.get("kind", 1)), (7, o.get("value", "0.15")),
    (8, o.get("currency", "")), (9, timestamp(NOV_3) if o.get("from", True) else None),
    (10, timestamp(o["to"]) if "to" in o else None),
))))
write("request_validation", "ok-rule-markup", rule())
write("request_validation", "ok-rule-fixed-price", rule(kind=3, value="0.0125", currency="USD", service="Amazon Simple Storage Service"))
write("request_validation", "ok-rule-discount-customer", rule(kind=2, value="0.05", customer="cus_0192a0b1c2d3", to=NOV_3 + 86400 * 30))
write("request_validation", "err-rule-missing", request(2, message((1, "rule-0002"))))
write("request_validation", "err-rule-discount-over-1", rule(kind=2, value="1.5"))
write("request_validation", "err-rule-markup-with-currency", rule(currency="USD"))
write("request_validation", "err-rule-ends-before-start", rule(to=NOV_3 - 1))
write("request_validation", "err-rule-no-start", rule(**{"from": False}))

listing = lambda **o: request(3, message((1, o.get("size", 0)), (2, o.get("token", "")), (3, o.get("status", 0)), (4, o.get("ref", ""))))
write("request_validation", "ok-list-first-page", listing(size=50, status=1))
write("request_validation", "ok-list-next-page", listing(size=50, status=1, token=token("status=1|external_ref=", "cus_0192a0b1c2d3e4f5")))
write("request_validation", "err-list-token-other-filters", listing(size=50, status=2, token=token("status=1|external_ref=", "cus_0192a0b1c2d3e4f5")))
write("request_validation", "err-list-page-size", listing(size=5000))
write("request_validation", "err-list-shown-status", listing(status=5))
write("request_validation", "err-not-protobuf", b"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")

# ---- microsoft_rows: export blobs, JSON lines (one gzip) -----------------------------------
ROW = {
    "PartnerId": "3c5a8e9d-1b2c-4d3e-8f4a-5b6c7d8e9f00", "PartnerName": "Example MSP",
    "CustomerId": "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8", "CustomerName": "Acme Widgets",
    "CustomerDomainName": "acmewidgets.onmicrosoft.com", "CustomerCountry": "ZA",
    "MpnId": "1234567", "InvoiceNumber": "", "ProductId": "DZH318Z0BQ4L", "SkuId": "0001",
    "AvailabilityId": "DZH318Z0BJ7F", "SkuName": "Azure plan", "ProductName": "Virtual Machines Dv3 Series",
    "PublisherName": "Microsoft", "PublisherId": "", "SubscriptionId": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
    "SubscriptionDescription": "Azure plan", "ChargeStartDate": "2026-11-01T00:00:00", "ChargeEndDate": "2026-11-30T00:00:00",
    "UsageDate": "2026-11-03T00:00:00", "MeterType": "1 Compute Hour", "MeterCategory": "Virtual Machines",
    "MeterId": "7d4bd3c4-3c3b-4a1e-8b52-0c5e6f7a8b9c", "MeterSubCategory": "Dv3/DSv3 Series",
    "MeterName": "D2 v3/D2s v3", "MeterRegion": "EU West", "UnitOfMeasure": "1 Hour",
    "ResourceLocation": "westeurope", "ConsumedService": "Microsoft.Compute",
    "ResourceGroup": "acme-prod", "ResourceURI": "/subscriptions/4c5d2f8e-0b1a-4f3e-9c7d-2a1b3c4d5e6f/resourceGroups/acme-prod/providers/Microsoft.Compute/virtualMachines/web-01",
    "ChargeType": "new", "UnitPrice": 0.1234567890123, "Quantity": 24.000000000001, "UnitType": "1 Hour",
    "BillingPreTaxTotal": 2.66666666666667, "BillingCurrency": "EUR", "PricingPreTaxTotal": 3.0000000000001,
    "PricingCurrency": "USD", "EntitlementId": "4c5d2f8e-0b1a-4f3e-9c7d-2a1b3c4d5e6f",
    "EntitlementDescription": "Acme production", "PCToBCExchangeRate": 0.9234567891,
    "PCToBCExchangeRateDate": "2026-11-01T00:00:00", "EffectiveUnitPrice": 0.1111111111111,
    "RateOfPartnerEarnedCredit": 0, "RateOfCredit": 0, "CreditType": "Credit Not Applied",
    "BenefitType": "", "Tags": "{\"env\":\"prod\"}", "AdditionalInfo": "{\"ServiceType\":\"Standard_D2_v3\"}",
}


def row(**over):
    r = dict(ROW)
    for k, v in over.items():
        if v is None:
            r.pop(k, None)
        else:
            r[k] = v
    return json.dumps(r, separators=(",", ":"))


def blob(*rows):
    return "\n".join(rows) + "\n"


storage = row(MeterCategory="Storage", MeterId="b4d2f0e1-3a5c-4e7b-9d1f-2c4e6a8b0d13", MeterName="P10 LRS Disk",
              UnitOfMeasure="1/Month", UnitPrice="1.5360000000", Quantity="0.0333333333", BillingPreTaxTotal="0.0512",
              PricingCurrency="EUR", PCToBCExchangeRate=None, ResourceLocation="")
write("microsoft_rows", "ok-one-row", blob(row()))
write("microsoft_rows", "ok-two-meters", blob(row(), storage))
write("microsoft_rows", "ok-merge-same-key", blob(row(), row(ResourceURI="/x/web-02", Quantity=24, BillingPreTaxTotal="2.5")))
write("microsoft_rows", "ok-latent-october", blob(row(UsageDate="2026-10-30T00:00:00")))
write("microsoft_rows", "ok-camel-case-strings", blob(json.dumps({
    "customerId": "c", "subscriptionId": "s", "meterId": "m", "productName": "Storage",
    "usageDate": "2026-11-03", "quantity": "1.5", "billingPreTaxTotal": "0.30", "billingCurrency": "USD"})))
write("microsoft_rows", "ok-scientific", blob(row(Quantity=1e-05, BillingPreTaxTotal="2.5E-7", UnitPrice="1E-5")))
write("microsoft_rows", "ok-rfc3339-date", blob(row(UsageDate="2026-11-03T00:00:00Z")))
write("microsoft_rows", "ok-blank-lines", "\n" + blob(row()) + "\n\n")
write("microsoft_rows", "ok-gzip.json.gz", gzip.compress(blob(row(), storage).encode(), mtime=0))
write("microsoft_rows", "err-after-period", blob(row(UsageDate="2026-12-01T00:00:00")))
write("microsoft_rows", "err-not-json", blob("[1,2]"))
write("microsoft_rows", "err-quantity-words", blob(row(Quantity="lots")))
write("microsoft_rows", "err-too-many-digits", blob(row(BillingPreTaxTotal="0.12345678901234567890123456789")))
write("microsoft_rows", "err-no-rate", blob(row(PCToBCExchangeRate=None)))
write("microsoft_rows", "err-conflicting-units", blob(row(), row(UnitOfMeasure="10 Hours")))
write("microsoft_rows", "err-no-customer", blob(row(CustomerId=None)))
write("microsoft_rows", "err-bad-date", blob(row(UsageDate="yesterday")))
write("microsoft_rows", "err-bool-quantity", blob(row(Quantity=True)))
write("microsoft_rows", "err-truncated-gzip", gzip.compress(blob(row()).encode(), mtime=0)[:40])
write("microsoft_rows", "err-latin1", b"\xff" + blob(row()).encode())

# ---- microsoft_manifest: operation answers and manifests -----------------------------------
MANIFEST = {
    "id": "e7b5a3f1-0d2c-4b6a-9e8f-1a2b3c4d5e6f", "version": "1", "dataFormat": "compressedJSON",
    "createdDateTime": "2026-11-20T08:15:02Z", "eTag": "0x8DCF1A2B3C4D5E6", "partnerTenantId": "3c5a8e9d-1b2c-4d3e-8f4a-5b6c7d8e9f00",
    "rootDirectory": "https://adlsreconbuprodeastus01.blob.core.windows.net/exportapi/3c5a8e9d/e7b5a3f1",
    "sasToken": "?sv=2021-10-04&st=2026-11-20T08%3A10%3A02Z&se=2026-11-21T08%3A15%3A02Z&sr=c&sp=rl&sig=abc%2Bdef%3D",
    "blobCount": 2,
    "blobs": [
        {"name": "part-00000-1f2e3d4c.json.gz", "partitionValue": "default"},
        {"name": "part-00001-1f2e3d4c.json.gz", "partitionValue": "default"},
    ],
}


def op(status, **extra):
    d = {"id": "0e5a9c1d-2b3f-4a5e-8d7c-6b5a4f3e2d1c", "createdDateTime": "2026-11-20T08:14:40Z",
         "lastActionDateTime": "2026-11-20T08:15:02Z", "status": status}
    d.update(extra)
    return json.dumps(d, indent=1)


write("microsoft_manifest", "ok-running", op("running"))
write("microsoft_manifest", "ok-not-started", op("notStarted"))
write("microsoft_manifest", "ok-succeeded-link", op("succeeded", **{
    "resourceLocation@odata.navigationLink": "https://graph.microsoft.com/v1.0/reports/partners/billing/manifests/e7b5a3f1"}))
write("microsoft_manifest", "ok-succeeded-relative-link", op("succeeded", **{"resourceLocation@odata.navigationLink": "../manifests/e7b5a3f1"}))
write("microsoft_manifest", "ok-succeeded-inline", op("succeeded", resourceLocation=MANIFEST))
write("microsoft_manifest", "ok-manifest", json.dumps(MANIFEST, indent=1))
write("microsoft_manifest", "ok-manifest-no-count", json.dumps({k: v for k, v in MANIFEST.items() if k != "blobCount"}))
write("microsoft_manifest", "err-failed", op("failed", error={"code": "InternalError", "message": "export failed"}))
write("microsoft_manifest", "err-link-elsewhere", op("succeeded", **{"resourceLocation@odata.navigationLink": "https://evil.example/manifest"}))
write("microsoft_manifest", "err-succeeded-nothing", op("succeeded"))
write("microsoft_manifest", "err-count-mismatch", json.dumps(dict(MANIFEST, blobCount=3)))
write("microsoft_manifest", "err-http-root", json.dumps(dict(MANIFEST, rootDirectory="http://acct.blob.core.windows.net/c")))
write("microsoft_manifest", "err-no-etag", json.dumps({k: v for k, v in MANIFEST.items() if k != "eTag"}))
write("microsoft_manifest", "err-status-number", json.dumps({"status": 3}))
write("microsoft_manifest", "err-html", "<html><body>Service Unavailable</body></html>")


# ---- aws_cost_explorer: GetCostAndUsage response bodies ------------------------------------
def metric(amount, unit):
    return {"Amount": amount, "Unit": unit}


def group(account, second, cost, quantity, net=None, unit="Hrs", amortized=True):
    m = {"NetUnblendedCost": metric(net or cost, "USD"), "UnblendedCost": metric(cost, "USD"),
         "UsageQuantity": metric(quantity, unit)}
    if amortized:
        m["NetAmortizedCost"] = metric(net or cost, "USD")
        m["AmortizedCost"] = metric(cost, "USD")
    return {"Keys": [account, second], "Metrics": m}


def answer(*results, token=None):
    d = {"GroupDefinitions": [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "SERVICE"}],
         "ResultsByTime": list(results),
         "DimensionValueAttributes": [{"Value": "111122223333", "Attributes": {"description": "Acme production"}}]}
    if token:
        d["NextPageToken"] = token
    return json.dumps(d, indent=1)


def result(start, end, groups, estimated=True):
    return {"TimePeriod": {"Start": start, "End": end}, "Total": {}, "Groups": groups, "Estimated": estimated}


ec2 = group("111122223333", "Amazon Elastic Compute Cloud - Compute", "12.3456789012", "48", net="11.1111110111")
s3 = group("111122223333", "Amazon Simple Storage Service", "0.0101516483", "3.2113", unit="GB-Mo")
write("aws_cost_explorer", "ok-daily", answer(result("2026-11-01", "2026-11-02", [ec2, s3])))
write("aws_cost_explorer", "ok-two-days-next-page", answer(result("2026-11-01", "2026-11-02", [ec2]), result("2026-11-02", "2026-11-03", [ec2], estimated=False), token="AQICAHh0ZXN0"))
write("aws_cost_explorer", "ok-hourly", answer(result("2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", [ec2])))
write("aws_cost_explorer", "ok-tiny-exponent", answer(result("2026-11-01", "2026-11-02", [group("444455556666", "AWS Key Management Service", "-1.2E-9", "1E-5", unit="N/A")])))
write("aws_cost_explorer", "ok-empty", answer(result("2026-11-01", "2026-11-02", [])))
write("aws_cost_explorer", "ok-no-results", json.dumps({"ResultsByTime": []}))
write("aws_cost_explorer", "err-one-key", answer(result("2026-11-01", "2026-11-02", [dict(ec2, Keys=["111122223333"])])))
write("aws_cost_explorer", "err-missing-metric", answer(result("2026-11-01", "2026-11-02", [{"Keys": ["1", "S"], "Metrics": {"UnblendedCost": metric("1", "USD")}}])))
write("aws_cost_explorer", "err-bad-amount", answer(result("2026-11-01", "2026-11-02", [group("1", "S", "1,5", "2")])))
write("aws_cost_explorer", "err-bad-period", answer(result("November", "2026-11-02", [ec2])))
write("aws_cost_explorer", "err-no-period", json.dumps({"ResultsByTime": [{"Groups": [ec2], "Estimated": True}]}))
write("aws_cost_explorer", "err-twice", answer(result("2026-11-01", "2026-11-02", [ec2, ec2])))
write("aws_cost_explorer", "err-list-other-currency", answer(result("2026-11-01", "2026-11-02", [{"Keys": ["1", "S"], "Metrics": {
    "NetUnblendedCost": metric("8", "USD"), "UnblendedCost": metric("9", "EUR"), "UsageQuantity": metric("2", "Hrs")}}])))
write("aws_cost_explorer", "err-not-json", "<ErrorResponse/>")
write("aws_cost_explorer", "err-amount-number", answer(result("2026-11-01", "2026-11-02", [{"Keys": ["1", "S"], "Metrics": {
    "NetUnblendedCost": {"Amount": 8.5, "Unit": "USD"}, "UnblendedCost": metric("9", "USD"), "UsageQuantity": metric("2", "Hrs")}}])))

