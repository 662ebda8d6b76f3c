"""Delivery reports: bounces, delays and complaints matched to the emails they speak of."""
