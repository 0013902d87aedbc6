"""Builds pii-zh-en.jsonl: a labelled PII test set in Chinese and English, with hard negatives.

Every line is {"text": ..., "pii": [{"kind": ..., "value": ...}]}. Values are generated valid for their kind (ID
numbers with the GB 11643 checksum and a real birth date, bank cards Luhn-valid with a network prefix, mobile numbers
in real number ranges) and written in the ways customers write them (separators, +86, full sentences). Hard
negatives are numbers a shop conversation is full of: order and tracking numbers, dates, times, amounts, barcodes,
postcodes, versions, ID-shaped numbers with a wrong checksum, card-shaped numbers that fail Luhn.

Deterministic (seeded): `python3 eval/datasets/make_pii_set.py` rewrites the same file.
"""
import json
import random
import string

rng = random.Random(7)
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
C = "10X98765432"


def id_number(valid=True):
    area = rng.choice(["110105", "310104", "440305", "330106", "510107", "420111"])
    y, m, d = rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28)
    body = f"{area}{y:04d}{m:02d}{d:02d}{rng.randint(0, 999):03d}"
    check = C[sum(int(a) * w for a, w in zip(body, W)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789" if c != check])
    return body + check


def luhn_ok(num):
    total = 0
    for i, ch in enumerate(reversed(num)):
        dgt = int(ch)
        if i % 2 == 1:
            dgt *= 2
            if dgt > 9:
                dgt -= 9
        total += dgt
    return total % 10 == 0


def card(valid=True):
    prefix, length = rng.choice([("62", 16), ("62", 19), ("4", 16), ("5", 16), ("37", 15)])
    if prefix == "5":
        prefix = "5" + str(rng.randint(1, 5))
    while True:
        body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix)))
        if luhn_ok(body) == valid:
            return body


def grouped(num):
    return " ".join(num[i:i + 4] for i in range(0, len(num), 4))


def mobile():
    return rng.choice(["13", "15", "17", "18", "19"]) + str(rng.randint(0, 9)) + "".join(rng.choice(string.digits) for _ in range(8))


def mobile_written(m):
    style = rng.randint(0, 3)
    if style == 0:
        return m
    if style == 1:
        return f"{m[:3]}-{m[3:7]}-{m[7:]}"
    if style == 2:
        return f"+86 {m}"
    return f"{m[:3]} {m[3:7]} {m[7:]}"


def landline():
    area = rng.choice(["010", "021", "0755", "0571", "028"])
    n = str(rng.randint(2, 8)) + "".join(rng.choice(string.digits) for _ in range(7 if len(area) == 3 else 6))
    return rng.choice([f"{area}-{n}", f"({area}){n}"])


def email():
    user = rng.choice(["li.lei", "hanmeimei", "zhang_san88", "amy.w", "service-team", "j.doe"])
    dom = rng.choice(["example.com", "qq.com", "163.com", "mail.example.cn", "shop.example.com.cn"])
    return f"{user}@{dom}"


def passport():
    return rng.choice(["E", "G"]) + "".join(rng.choice(string.digits) for _ in range(8))


def ipv4():
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


POS = [
    ("phone", lambda: mobile_written(mobile()), ["我的手机号是{v}，麻烦尽快联系我", "请打{v}找我", "收件人电话 {v}", "My phone number is {v}.", "Call me on {v} after 6pm", "联系电话：{v}"]),
    ("phone", landline, ["公司座机{v}，工作日可以打", "Our office line is {v}", "座机号码是{v}"]),
    ("id_card", lambda: id_number(True), ["身份证号{v}，请帮我实名认证", "我的证件号码是 {v}", "ID number: {v}"]),
    ("bank_card", lambda: rng.choice([card(True), grouped(card(True))]), ["退款请打到这张卡 {v}", "银行卡号：{v}", "Please refund to card {v}", "my card is {v} thanks"]),
    ("email", email, ["发票请发到 {v}", "邮箱{v}", "Send the invoice to {v} please", "email me at {v}"]),
    ("passport", passport, ["护照号码{v}", "My passport number is {v}", "报关需要的护照：{v}"]),
    ("ip", ipv4, ["登录异常的IP是{v}", "I logged in from {v} yesterday", "服务器地址 {v} 访问不了"]),
]

NEG = [
    lambda: f"订单号{rng.randint(10**17, 10**18 - 1)}什么时候发货",
    lambda: f"Order #{rng.randint(10**15, 10**16 - 1)} has not arrived",
    lambda: f"运单号SF{rng.randint(10**12, 10**13 - 1)}查不到物流",
    lambda: f"tracking number YT{rng.randint(10**14, 10**15 - 1)}",
    lambda: f"{rng.randint(2024, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} 下的单",
    lambda: f"金额¥{rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d}，已付款",
    lambda: f"商品条码 69{rng.randint(10**10, 10**11 - 1)}",
    lambda: f"邮编{rng.randint(100000, 899999)}",
    lambda: f"app version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
    lambda: f"身份证好像是{id_number(False)}，不确定",
    lambda: f"卡号{card(False)}好像输错了",
    lambda: f"买了{rng.randint(2, 20)}件，共{rng.randint(100, 9999)}元",
    lambda: f"会员编号 M{rng.randint(10**8, 10**9 - 1)}",
    lambda: f"优惠码 SAVE{rng.randint(10, 99)}",
    lambda: f"下午{rng.randint(1, 5)}:{rng.randint(10, 59)}之前能送到吗",
    lambda: f"SKU {rng.randint(100000, 999999)}-{rng.randint(10, 99)} 还有货吗",
    lambda: f"第{rng.randint(2, 9)}次联系客服了，单号{rng.randint(10**19, 10**20 - 1)}",
]

rows = []
for _ in range(360):
    kind, gen, templates = rng.choice(POS)
    value = gen()
    text = rng.choice(templates).format(v=value)
    pii = [{"kind": kind, "value": value}]
    if rng.random() < 0.3:  # a second value in the same message
        kind2, gen2, _ = rng.choice(POS)
        value2 = gen2()
        text += rng.choice(["，另外 ", "; also ", "，备用："]) + value2
        pii.append({"kind": kind2, "value": value2})
    if rng.random() < 0.3:  # plus a hard negative in the same message
        text += "，" + rng.choice(NEG)()
    rows.append({"text": text, "pii": pii})
for _ in range(240):
    rows.append({"text": rng.choice(NEG)(), "pii": []})
rng.shuffle(rows)
with open("eval/datasets/pii-zh-en.jsonl", "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(len(rows), "rows,", sum(len(r["pii"]) for r in rows), "values")
