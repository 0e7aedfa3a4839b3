"""What a gateway process counts of the requests it answers, and the `/metrics` page it renders
with the figures its workers send."""
