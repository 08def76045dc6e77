"""The partner-brand catalogue (which brands a «Дарим Мульти» can be exchanged for right now)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from sqlalchemy import select

from backoffice.db import SessionFactory, read_transaction
from backoffice.models import Brand
from backoffice.serializers import brand_view


def list_brands(
    session_factory: SessionFactory, *, name: Optional[str] = None, in_catalogue: Optional[bool] = None
) -> List[Dict[str, Any]]:
    query = select(Brand).order_by(Brand.name)
    if name:
        query = query.where(Brand.name == name)
    if in_catalogue is not None:
        query = query.where(Brand.in_catalogue == in_catalogue)
    with read_transaction(session_factory) as session:
        return [brand_view(brand) for brand in session.execute(query).scalars()]
