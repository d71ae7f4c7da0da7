"""MySQL 8 and MariaDB ``EXPLAIN FORMAT=JSON`` documents -> signals, and the time limits.

MySQL 8 shapes follow the examples in the MySQL 8.0 reference manual ("EXPLAIN Output
Format", FORMAT=JSON); MariaDB shapes are what MariaDB 10.11 prints for the test models."""

from __future__ import annotations

import json
from types import SimpleNamespace

from django_nplusone_guard.explain.base import JOIN_SCAN, READ, SCAN, SORT
from django_nplusone_guard.explain.mysql import (
    MySQLExplain,
    parse_json_plan,
    with_execution_time_hint,
    with_max_statement_time,
)


def signals(document) -> list[tuple[str, str]]:
    return [(s.kind, s.alias) for s in parse_json_plan(document)]


MYSQL8_FULL_SCAN = {
    "query_block": {
        "select_id": 1,
        "cost_info": {"query_cost": "1.25"},
        "table": {
            "table_name": "testapp_listing",
            "access_type": "ALL",
            "rows_examined_per_scan": 10,
            "rows_produced_per_join": 1,
            "filtered": "10.00",
            "cost_info": {"read_cost": "1.13", "eval_cost": "0.10", "prefix_cost": "1.25"},
            "used_columns": ["id", "city"],
            "attached_condition": "(`db`.`testapp_listing`.`city` = 'Leeds')",
        },
    }
}

MYSQL8_FILESORT = {
    "query_block": {
        "select_id": 1,
        "cost_info": {"query_cost": "1.25"},
        "ordering_operation": {
            "using_filesort": True,
            "table": {
                "table_name": "testapp_listing",
                "access_type": "ALL",
                "rows_examined_per_scan": 10,
                "filtered": "100.00",
            },
        },
    }
}

MYSQL8_HASH_JOIN = {
    "query_block": {
        "select_id": 1,
        "nested_loop": [
            {"table": {"table_name": "a", "access_type": "ALL", "rows_examined_per_scan": 3}},
            {
                "table": {
                    "table_name": "T3",
                    "access_type": "ALL",
                    "rows_examined_per_scan": 3,
                    "using_join_buffer": "hash join",
                    "attached_condition": "(`db`.`T3`.`a_id` = `db`.`a`.`id`)",
                }
            },
        ],
    }
}

MYSQL8_REF = {
    "query_block": {
        "select_id": 1,
        "table": {
            "table_name": "testapp_listing",
            "access_type": "ref",
            "possible_keys": ["ix_owner"],
            "key": "ix_owner",
            "used_key_parts": ["owner_id"],
            "ref": ["const"],
            "rows_examined_per_scan": 1,
        },
    }
}

MARIADB_SORTED = {
    "query_block": {
        "select_id": 1,
        "nested_loop": [
            {
                "read_sorted_file": {
                    "filesort": {
                        "sort_key": "testapp_listing.listed desc",
                        "table": {
                            "table_name": "testapp_listing",
                            "access_type": "ALL",
                            "rows": 3,
                            "filtered": 100,
                        },
                    }
                }
            }
        ],
    }
}

MARIADB_BNL = {
    "query_block": {
        "select_id": 1,
        "nested_loop": [
            {"table": {"table_name": "testapp_listing", "access_type": "ALL", "rows": 3}},
            {
                "block-nl-join": {
                    "table": {
                        "table_name": "testapp_author",
                        "access_type": "ALL",
                        "possible_keys": ["PRIMARY"],
                        "rows": 3,
                        "attached_condition": "testapp_author.`name` = 'A'",
                    },
                    "buffer_type": "flat",
                    "join_type": "BNL",
                    "attached_condition": "testapp_author.`id` = testapp_listing.owner_id",
                }
            },
        ],
    }
}

MARIADB_MATERIALIZED = {
    "query_block": {
        "select_id": 1,
        "nested_loop": [
            {"table": {"table_name": "testapp_book", "access_type": "ALL", "rows": 1}},
            {
                "table": {
                    "table_name": "<subquery2>",
                    "access_type": "eq_ref",
                    "materialized": {
                        "unique": 1,
                        "query_block": {
                            "select_id": 2,
                            "nested_loop": [
                                {
                                    "table": {
                                        "table_name": "U0",
                                        "access_type": "ALL",
                                        "rows": 3,
                                        "attached_condition": "U0.city = 'x'",
                                    }
                                }
                            ],
                        },
                    },
                }
            },
        ],
    }
}


def test_mysql8_full_scan_with_condition():
    (signal,) = parse_json_plan(MYSQL8_FULL_SCAN)
    assert (signal.kind, signal.alias, signal.rows_estimate) == (SCAN, "testapp_listing", 10)
    assert "attached_condition" in signal.plan


def test_mysql8_filesort_and_hash_join_buffer():
    assert signals(MYSQL8_FILESORT) == [(READ, "testapp_listing"), (SORT, "")]
    assert signals(MYSQL8_HASH_JOIN) == [(READ, "a"), (SCAN, "t3"), (JOIN_SCAN, "t3")]
    assert signals(MYSQL8_REF) == []


def test_mariadb_sorted_file_block_nl_join_and_materialized_subquery():
    assert signals(MARIADB_SORTED) == [(SORT, ""), (READ, "testapp_listing")]
    assert signals(MARIADB_BNL) == [
        (READ, "testapp_listing"),
        (SCAN, "testapp_author"),
        (JOIN_SCAN, "testapp_author"),
    ]
    assert signals(MARIADB_MATERIALIZED) == [(READ, "testapp_book"), (SCAN, "u0")]


def test_messages_without_tables_give_no_signal():
    impossible = {"query_block": {"select_id": 1, "table": {"message": "Impossible WHERE"}}}
    assert signals(impossible) == []
    assert signals([]) == []


def test_parse_plan_accepts_mariadb_backslash_quote_escapes():
    text = json.dumps(MYSQL8_FULL_SCAN).replace("'Leeds'", "'O\\\\'Brien'")
    text = text.replace("\\\\'", "\\'")  # MariaDB's invalid escape
    with_bad_escape = text
    assert "\\'" in with_bad_escape
    (signal,) = MySQLExplain().parse_plan([(with_bad_escape,)])
    assert "O'Brien" in signal.plan


def test_time_limits():
    assert with_max_statement_time("EXPLAIN FORMAT=JSON SELECT 1", 200) == (
        "SET STATEMENT max_statement_time=0.200 FOR EXPLAIN FORMAT=JSON SELECT 1"
    )
    assert with_execution_time_hint("SELECT `a` FROM t", 150) == (
        "SELECT /*+ MAX_EXECUTION_TIME(150) */ `a` FROM t"
    )
    assert with_execution_time_hint("/* tag */ select 1", 5) == (
        "/* tag */ select /*+ MAX_EXECUTION_TIME(5) */ 1"
    )


def test_explain_statement_per_vendor():
    backend = MySQLExplain()
    mariadb = SimpleNamespace(mysql_is_mariadb=True)
    mysql = SimpleNamespace(mysql_is_mariadb=False)
    assert backend.explain_sql(mariadb, "SELECT 1", 200) == (  # type: ignore[arg-type]
        "SET STATEMENT max_statement_time=0.200 FOR EXPLAIN FORMAT=JSON SELECT 1"
    )
    assert backend.explain_sql(mysql, "SELECT 1", 200) == (  # type: ignore[arg-type]
        "EXPLAIN FORMAT=JSON SELECT /*+ MAX_EXECUTION_TIME(200) */ 1"
    )
