DROP TABLE subscriptions;
DROP TABLE catalog_unit_costs;
DROP TABLE catalog_items;
