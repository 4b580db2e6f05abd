"""A short text whose summary is in a script GSM-7 lacks (Cyrillic, CJK, a curly quote) is one
SMS segment too: 70 UTF-16 units in UCS-2 where that leaves the summary room, else 160
septets in GSM-7 with the summary spelled in GSM-7's letters (anyascii for what GSM-7
lacks); the link whole either way.
Checked against tests/test_messages.py's own GSM 03.38 table, and once through real Apprise
to the local sink."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from receiver.notify import sms
from receiver.notify.messages import REASONS, SHORT_LIMIT
from tests.sinks import HttpSink
from tests.test_api import LABELS
from tests.test_earlier import _daemon
from tests.test_messages import ACK, TEMPLATES, ctx, incident, is_gsm7, septets

CYRILLIC = "Платёжный API недоступен: доля ошибок 5xx выше 40% в кластере eu-west-1 уже 10 минут"
CJK = "支付服务不可用，错误率超过百分之四十，已持续十分钟，影响所有欧洲客户的结账流程"
QUOTED = "Payment “API” returns 5xx – 40% of requests… in eu-west-1 " * 3
EMOJI = "🔥 checkout down 🔥 " * 8
GREEK = "Σφάλμα πληρωμών: το API δεν αποκρίνεται στο eu-west-1 εδώ και δέκα λεπτά"
UCS2_LIMIT = 70
_URL = re.compile(r"https://\S+")


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _one_segment(body: str) -> bool:
    """GSM-7 in 160 septets, else UCS-2 in 70 UTF-16 units."""
    return septets(body) <= SHORT_LIMIT if is_gsm7(body) else _utf16_units(body) <= UCS2_LIMIT


@pytest.mark.parametrize("summary", [CYRILLIC, CJK, QUOTED, EMOJI, GREEK, "Сбой", "障害"],
                         ids=["cyrillic", "cjk", "quoted", "emoji", "greek", "short-cyrillic",
                              "short-cjk"])
@pytest.mark.parametrize("reason", REASONS)
def test_a_short_text_in_another_script_is_one_segment_with_its_link_whole(
    reason: str, summary: str,
) -> None:
    """Cut to 160 characters, such a text went as three UCS-2 segments."""
    context = ctx(reason, incident=incident(summary=summary))
    plain = TEMPLATES.render(replace(context, incident=incident(summary="x")), short=True)

    body = TEMPLATES.render(context, short=True).body

    assert _one_segment(body), (len(body), body)
    assert _URL.findall(body) == _URL.findall(plain.body)  # every link, whole


def test_a_page_spells_a_summary_in_another_script_in_gsm7_and_keeps_its_link() -> None:
    """The acknowledge link alone is about 80 characters: UCS-2's 70 leave the summary none,
    so the page goes in GSM-7, the summary transliterated: Cyrillic, CJK in pinyin (it read
    "?"), an emoji by its name."""
    body = TEMPLATES.render(ctx(incident=incident(summary="Платёжный API недоступен")),
                            short=True).body
    assert body == f"[SEV1] #42 payments: Platezhnyy API nedostupen Ack: {ACK}"

    long = TEMPLATES.render(ctx(incident=incident(summary=CYRILLIC)), short=True).body
    assert long == ("[SEV1] #42 payments: Platezhnyy API nedostupen: dolya oshibok 5xx vyshe"
                    f" 40%... Ack: {ACK}")
    # Cut at the space after "40%", which the cut drops: one septet short of the limit.
    assert (is_gsm7(long), septets(long)) == (True, SHORT_LIMIT - 1)

    cjk = TEMPLATES.render(ctx(incident=incident(summary="支付失败 on db-1")), short=True).body
    assert cjk == f"[SEV1] #42 payments: ZhiFuShiBai on db-1 Ack: {ACK}"

    emoji = TEMPLATES.render(ctx("acknowledged", incident=incident(summary="disk 🔥 full")),
                             short=True).body
    assert emoji.startswith("#42 ack'd by ana: disk :fire: full Resolve: https://")
    assert is_gsm7(emoji)


def test_a_note_without_a_link_keeps_its_script_in_one_ucs2_segment() -> None:
    """A resolution note has no link: one UCS-2 segment holds 56 units of the summary, cut
    with "…" (one unit, where GSM-7 needs three dots)."""
    short = TEMPLATES.render(ctx("resolved", incident=incident(summary="Сбой оплаты")),
                             short=True).body
    assert short == "#42 resolved: Сбой оплаты"

    body = TEMPLATES.render(ctx("resolved", incident=incident(summary=CJK * 2)),
                            short=True).body
    assert body == "#42 resolved: " + (CJK * 2)[:55] + "…"
    assert _utf16_units(body) == UCS2_LIMIT

    emoji = TEMPLATES.render(ctx("resolved", incident=incident(summary=EMOJI)), short=True).body
    assert not is_gsm7(emoji)
    assert _utf16_units(emoji) <= UCS2_LIMIT  # an emoji takes two units: never half of one


@pytest.mark.parametrize(("text", "spelled"), [
    ("Щука и ёж", "Shchuka i ezh"),
    ("Ґанок, Єва, їжак, Київ", "Ganok, Ieva, izhak, Kiiv"),
    ("“quoted” ‘single’ – dash — long… ", "\"quoted\" 'single' - dash - long... "),
    # What GSM-7 has stays as it is (ß, Æ, é, its Greek capitals); only the rest is spelled.
    ("Straße Ærø é ç ł ô", "Straße Ærø é c l o"),
    ("ΣΦΑΛΜΑ σφάλμα", "ΣΦAΛMA sfalma"),
    ("支付，服务 down 错误。", "ZhiFu,FuWu down CuoWu."),
    ("disk 🔥 full, ⚠️ hot", "disk :fire: full, :warning: hot"),
    ("Ａｌｅｒｔ①", "Alert1"),
    # ASCII GSM-7 lacks: the grave accent as an apostrophe, a tab as a space, a bell nothing.
    ("a`b\tc\x07d", "a'b cd"),
    # Spelled as nothing: an accent or a zero-width space vanishes; a visible character
    # anyascii cannot spell (private use) leaves a "?", unless its run spelled otherwise.
    ("e\u0301 a\u200bb", "e ab"),
    ("x\ue000y \ue000", "x?y ?"),
    ("支\ue000付", "ZhiFu"),
])
def test_a_summary_is_spelled_in_gsm7s_letters(text: str, spelled: str) -> None:
    assert sms.spelled(text) == spelled
    assert is_gsm7(spelled)


def test_whatever_anyascii_spells_is_gsm7() -> None:
    """anyascii answers in ASCII, which GSM-7 has but for "`" and the controls: every
    character of the first 12,288 (Latin to CJK's punctuation) and of the emoji blocks."""
    text = "".join(map(chr, [*range(0x3000), *range(0x1F300, 0x1FB00)]))
    assert is_gsm7(sms.spelled(text))


def test_the_alphabets_agree_with_the_gsm_table() -> None:
    """notify/sms.py's alphabet is GSM 03.38's (less the escape no text holds)."""
    for code in range(0x3000):
        char = chr(code)
        assert sms.is_gsm7(char) == (is_gsm7(char) and char != "\x1b"), repr(char)
    assert sms.ucs2_units("🔥a") == _utf16_units("🔥a") == 3


async def test_an_sms_page_with_a_cyrillic_alert_name_arrives_as_one_gsm7_segment(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """Through ackd's own Apprise notifier to a `short: true` json:// contact: the text the
    gateway would get is one GSM-7 segment, the alert's name spelled, the link whole."""
    api = await _daemon(tmp_path, sink, short="ana")
    try:
        number = await api.fire({**LABELS, "alertname": "Платёжный API недоступен"})
        await api.settle()
        [page] = await sink.wait_for(1)
        assert page.path == "/ana"
        text = page.json["message"]
        assert text.startswith(f"[SEV1] #{number} payments: Platezhnyy API nedostupen Ack: ")
        assert is_gsm7(text)
        assert septets(text) <= SHORT_LIMIT
    finally:
        await api.daemon.stop()
