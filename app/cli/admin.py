"""``admin ...``: organizer operations on the service's database, and ``admin team
create|token|list``."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.admin_phases import add_phase_commands
from app.cli.boards import add_leaderboard_commands
from app.cli.common import EXIT_OK, command, load_settings, open_db, settings_args
from app.cli.service import add_data_commands


def add_admin(subparsers: Any) -> None:
    """``admin`` and its groups: init/migrate/purge, phase, team, leaderboard."""
    ad = subparsers.add_parser("admin", help="organizer operations on the service's database")
    settings_args(ad)
    ads = ad.add_subparsers(dest="admin_command", required=True)
    add_data_commands(ads)
    add_phase_commands(ads)
    _add_team_commands(ads)
    add_leaderboard_commands(ads)


def _add_team_commands(admin_subparsers: Any) -> None:
    tm = admin_subparsers.add_parser("team", help="create teams and their tokens")
    tms = tm.add_subparsers(dest="team_command", required=True)
    tc = tms.add_parser("create", help="create a team; its token is the last line of stdout")
    tc.add_argument("--name", required=True)
    command(tc, "admin.team.create", cmd_team_create)
    tt = tms.add_parser("token", help="revoke a team's tokens and print a new one")
    tt.add_argument("--name", required=True)
    command(tt, "admin.team.token", cmd_team_token)
    tl = tms.add_parser("list", help="list teams")
    command(tl, "admin.team.list", cmd_team_list)


def cmd_team_create(args: argparse.Namespace) -> int:
    from app.services.teams import create_team

    with open_db(load_settings(args))() as s:
        team, token = create_team(s, args.name)
        s.commit()
        print(f"team {team.name!r} created (id {team.id}); its token, shown once:")
    print(token)
    return EXIT_OK


def cmd_team_token(args: argparse.Namespace) -> int:
    from app.services.teams import rotate_team_token

    with open_db(load_settings(args))() as s:
        token = rotate_team_token(s, args.name)
        s.commit()
    print(f"team {args.name!r}: earlier tokens revoked; the new token, shown once:")
    print(token)
    return EXIT_OK


def cmd_team_list(args: argparse.Namespace) -> int:
    from app.services.teams import list_teams

    with open_db(load_settings(args))() as s:
        for t in list_teams(s):
            print(f"{t['name']}\t{t['submissions']} submission(s)")
    return EXIT_OK
