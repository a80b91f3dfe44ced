DROP TABLE pending_seat_orders;
