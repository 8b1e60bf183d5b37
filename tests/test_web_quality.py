"""The quality dashboard page: the manager's home, both languages, the chart, the centre filter,
the CSV, and who may not open it."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.web.i18n import Translator
from ehospital.web.pages.quality import duration
from tests.personas import World
from tests.quality_data import FIRST, LAST, quality_story
from tests.test_web_pages import sign_in

PAGE = "/manage/quality"


async def test_the_manager_lands_on_the_dashboard_of_their_centre(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    await sign_in(client, "manager.m")
    home = await client.get("/account")  # a signed-in page: its nav leads to the dashboard
    assert f'href="{PAGE}"' in home.text

    page = await client.get(PAGE, params={"from": FIRST, "to": LAST, "lang": "en"})
    assert page.status_code == 200, page.text
    text = page.text
    assert "Quality dashboard" in text and 'aria-current="page"' in text
    assert re.findall(r'data-day="([0-9-]+)"', text) == [FIRST, LAST]
    assert re.findall(r'data-centre="([^"]+)"', text) == ["t-diabetes"]  # not the skin centre
    day2 = text.split(f'data-day="{FIRST}"')[1].split("</tr>")[0]
    assert ">6<" in day2 and "33.3%" in day2 and "15 min" in day2 and "39 min" in day2  # p50, p90
    day3 = text.split(f'data-day="{LAST}"')[1].split("</tr>")[0]
    assert "100.0%" in day3 and "1 h 00 min" in day3 and "¥42.00" in day3
    # The chart: one column per day, the median drawn over the 90th percentile, no inline style.
    assert text.count('class="q-p50"') == 2 and text.count('class="q-p90"') == 2
    assert "median 15 min, 90th percentile 39 min (3 answered)" in text
    assert 'style="' not in text and "<script>" not in text
    assert '<link rel="stylesheet" href="/static/quality.css">' in text
    doctors = re.findall(r'data-doctor="(\d+)"', text)
    assert sorted(doctors) == sorted([str(world.dr_dia.doctor_id), str(world.dr_dia2.doctor_id)])
    assert f'href="{PAGE}.csv?from={FIRST}&amp;to={LAST}"' in text
    # The centre filter offers only their own centre, and no "all centres".
    assert "All centres" not in text and 'value="t-skin"' not in text

    zh = await client.get(PAGE, params={"from": FIRST, "to": LAST, "lang": "zh"})
    assert "质量看板" in zh.text and "首次响应中位数" in zh.text and "15 分钟" in zh.text

    css = await client.get("/static/quality.css")
    assert css.status_code == 200 and ".q-p50" in css.text


async def test_the_admin_chooses_a_centre(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    await sign_in(client, "admin.a")
    page = await client.get(PAGE, params={"from": FIRST, "to": LAST, "lang": "en"})
    assert page.status_code == 200
    assert "All centres" in page.text and {"t-diabetes", "t-skin"} <= set(
        re.findall(r'data-centre="([^"]+)"', page.text)
    )
    skin = await client.get(PAGE, params={"from": FIRST, "to": LAST, "centre": "t-skin", "lang": "en"})
    assert re.findall(r'data-centre="([^"]+)"', skin.text) == ["t-skin"]
    assert '<option value="t-skin" selected>' in skin.text
    assert re.findall(r'data-doctor="(\d+)"', skin.text) == [str(world.dr_skin.doctor_id)]


async def test_the_csv_comes_with_the_page_session(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    await sign_in(client, "manager.m")
    r = await client.get(f"{PAGE}.csv", params={"from": FIRST, "to": LAST})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("day,centre_id,centre_code,requested,") and len(lines) == 3
    assert lines[1].startswith(f"{FIRST},{world.diabetes.id},t-diabetes,6,2,1,1,0,2,")


async def test_an_empty_fresh_period_still_shows_every_day(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, "manager.m")
    page = await client.get(PAGE, params={"lang": "en"})
    assert page.status_code == 200
    assert len(re.findall(r'data-day="', page.text)) == 14
    assert "No doctor answered a consultation requested in this period." in page.text


@pytest.mark.parametrize(
    ("params", "status", "code", "words"),
    [
        ({"from": "2026-03-05", "to": "2026-03-01"}, 422, "date_range_reversed", "The start date is after"),
        ({"from": "March"}, 422, "invalid_date", "YYYY-MM-DD"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, 422, "date_range_too_long", "366"),
        ({"centre": "t-skin"}, 404, "centre_not_found", "does not exist"),
    ],
)
async def test_bad_choices_are_explained_on_the_page(
    client: httpx.AsyncClient, world: World, params: dict[str, str], status: int, code: str, words: str
) -> None:
    await sign_in(client, "manager.m")
    page = await client.get(PAGE, params={**params, "lang": "en"})
    assert page.status_code == status
    assert 'id="quality-error"' in page.text and code in page.text and words in page.text
    assert 'id="quality-filter"' in page.text  # the form stays, to correct the choice


@pytest.mark.parametrize("username", ["alice", "dr.dia", "pharmacist.p"])
async def test_other_roles_cannot_open_it(client: httpx.AsyncClient, world: World, username: str) -> None:
    await sign_in(client, username)
    for url in (PAGE, f"{PAGE}.csv"):
        r = await client.get(url)
        assert r.status_code == 403 and "wrong_role" in r.text, (username, url)
    assert f'href="{PAGE}"' not in (await client.get("/account")).text


async def test_signed_out_visitors_are_sent_to_sign_in(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get(PAGE)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_durations_read_at_a_glance() -> None:
    en, zh = Translator("en"), Translator("zh")
    assert [duration(en, s) for s in (None, 44.6, 270.0, 2340.0, 3600.0, 7530.0)] == [
        "—",
        "45 s",
        "4.5 min",
        "39 min",
        "1 h 00 min",
        "2 h 06 min",
    ]
    assert duration(zh, 2340.0) == "39 分钟"
