"""Datasets the project trains and evaluates on."""
