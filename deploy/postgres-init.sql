-- One database per service: each service can reach only its own.
CREATE DATABASE "order";
CREATE DATABASE inventory;
CREATE DATABASE payment;
CREATE DATABASE notification;
