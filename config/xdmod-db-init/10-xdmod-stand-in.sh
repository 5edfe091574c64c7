# Sourced (not executed) by the mariadb image's entrypoint on the first start of the xdmod-db service
# (an empty data volume), after it created MARIADB_DATABASE and MARIADB_USER; docker_process_sql is
# the entrypoint's client running as root over the socket. Makes the server stand in for XDMoD's:
# the tables the reconciliation reads (include/sql/xdmod_schema_subset.sql, mounted at
# /xdmod-usage-sql, with its ${modw} and ${modw_cloud} put in as XDMoD names them) and read access
# to them for MARIADB_USER. Not for an XDMoD server: XDMoD creates its own tables.
# tests/test_compose.py runs this file with a stand-in docker_process_sql and compares the SQL.

xdmod_schema_subset=${XDMOD_SCHEMA_SUBSET:-/xdmod-usage-sql/xdmod_schema_subset.sql}

{
	# resourcefact.start_date defaults to a zero date (XDMoD runs with sql_mode = '').
	echo "SET SESSION sql_mode = '';"
	sed -e 's/\${modw_cloud}/modw_cloud/g' -e 's/\${modw}/modw/g' "$xdmod_schema_subset"
} | docker_process_sql

docker_process_sql <<EOSQL
GRANT SELECT ON \`modw\`.* TO '${MARIADB_USER}'@'%';
GRANT SELECT ON \`modw_cloud\`.* TO '${MARIADB_USER}'@'%';
EOSQL
